"""FastDeploy's historical code paths, as Paddle programs with their persistent buffers (SPEC 4a).

Each class is a plug-in implementation: instantiated once per test case (or per multi-step run),
called once per step with the seam's input mapping, returning what every consumer of every layer
reads. Persistent buffers are allocated on the first call and never reset, as in the model runner,
so a tail left by an earlier step (or by the allocation itself) is what the next padded step reads.

What the buffers hold, read in the source (gongshaotian/FastDeploy, commits of SPEC 4a):

- Single-step (#7367, 2d8338f9e4e6): ``fastdeploy/worker/input_batch.py`` lines 192-194 allocate
  ``position_ids_buffer = paddle.zeros(..., int32)`` and ``slot_mapping_buffer = paddle.zeros(..., int64)``
  of ``max_num_batched_tokens`` entries; ``reset_share_inputs`` (lines 515-685) never touches them.
  ``gpu_model_runner.py`` lines 1277-1302 (``_compute_position_ids_and_slot_mapping``) write both
  ``[:current_total_tokens]``, ``current_total_tokens = ids_remove_padding.shape[0]``: the real token count,
  or under overlap scheduling the cached estimate (``_resolve_current_launch_token_num``, lines 315-338),
  whose extra rows carry batch id -1 (``pre_process``'s op allocates ``batch_id_per_token`` as
  ``paddle::full({token_num}, -1)``, ``custom_ops/gpu_ops/get_padding_offset.cu`` lines 102-103, and writes
  the real tokens' ids; the runner's own ``[:] = -1`` at line 1229 covers only the previous step's rows,
  since the ``copy_`` after it resizes the buffer to the op's output) and are gathered eagerly against
  ``block_tables[:num_running_requests]`` (line 1370): Paddle resolves row -1 to the last running request's
  row (probed on the CPU, ``paddle_runtime.py``; on the GPU unverified).
  Buffer size: the state's ``max_num_batched_tokens``. #7868 (b5c8290be631, input_batch.py lines 192-193)
  sizes it ``max_chunk_tokens`` instead, which ``FDConfig.get_max_chunk_tokens`` (config.py lines
  2475-2496) makes ``max_num_batched_tokens`` except on a decode-role instance (``max_num_seqs * (1 + k)``):
  to model that, give the state that value as ``max_num_batched_tokens``.
- Legacy (parent d2d633b05c2c): ``fastdeploy/model_executor/models/deepseek_v3.py`` lines 1175-1177
  allocate the model's own ``position_ids_buffer = paddle.empty(...)``: uninitialised (the state's
  ``prior_position_ids``, zeros when absent), then whatever earlier steps wrote; ``pre_process`` (lines
  1277-1294) writes it ``[:ids_remove_padding.shape[0]]``. The per-layer ``compute_slot_mapping`` (lines
  474-498) runs inside the captured graph over the padded rows, the indexer with 64 (line 693), the
  attention backend with the config block size (dsa_attention_backend.py line 349). Under graph replay a
  batch id of -1 resolves against the captured table, whose rows past ``bsz`` the state carries as
  ``block_tables_past_bsz`` (inferred from the capture's ``max_num_seqs`` rows; not run).
- Fused (#7960, 7198b5883a0e): see ``paddle_ops.fused_positions_and_slots``; the kernel writes only the rows
  ``seq_lens_this_time`` covers (``get_position_ids_and_slot_mapping.cu`` lines 33-50), so an overlap
  over-estimate's extra rows keep what the buffer held (stale, not gathered), the tail as above.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from validation.impls import paddle_ops as ops
from validation.impls.paddle_runtime import paddle

# The legacy DSA indexer hard-coded 64 tokens per block (deepseek_v3.py line 693 at d2d633b05c2c).
LEGACY_INDEXER_BLOCK_SIZE = 64
# How many decoder layers the legacy path recomputes slots in; DeepSeek-V3.2 has 61, 4 shows the pattern.
DEFAULT_NUM_LAYERS = 4
# input_batch.py at #7367 allocates both single-step buffers with paddle.zeros: slot 0 is a valid slot.
SLOT_BUFFER_FILL = 0
POSITION_BUFFER_FILL = 0
# The proposed fix (vLLM's contract, SPEC 4a): the rows past the real tokens hold this every step.
PAD_SLOT = -1

PositionOp = Callable[..., None]


def prior_contents(inputs: Mapping[str, Any], size: int) -> np.ndarray:
    """The legacy position buffer's memory at allocation: the state's ``prior_position_ids``, zeros after."""
    out = np.zeros(size, dtype=np.int32)
    prior = np.asarray(inputs.get("prior_position_ids", ()), dtype=np.int32)[:size]
    out[: prior.shape[0]] = prior
    return out


class _PersistentPath:
    """Shared machinery: the runner's persistent buffers and the conversion of the step inputs."""

    position_op: PositionOp
    position_dtype = "int32"
    uninitialised_positions = False  # legacy: paddle.empty, whose contents the state supplies

    def __init__(self, num_layers: int = DEFAULT_NUM_LAYERS) -> None:
        self.num_layers = num_layers
        self._positions: Any = None
        self._slots: Any = None

    def _buffers(self, inputs: Mapping[str, Any]) -> tuple[Any, Any]:
        """Allocate once per engine (per buffer size); later steps reuse them untouched."""
        pd = paddle()
        size = int(inputs["max_num_batched_tokens"])
        if self._positions is None or int(self._positions.shape[0]) != size:
            if self.uninitialised_positions:
                self._positions = pd.to_tensor(prior_contents(inputs, size)).astype(self.position_dtype)
            else:
                self._positions = pd.full([size], POSITION_BUFFER_FILL, dtype=self.position_dtype)
            self._slots = pd.full([size], SLOT_BUFFER_FILL, dtype="int64")
        return self._positions, self._slots

    def _single_step_result(self, positions: Any, slots: Any, n: int, padded: int,
                            hazards: list[str]) -> dict[str, Any]:
        """What a single-step path hands its consumers: the persistent buffers' first rows (the tail reset
        first, for the fixed paths)."""
        if self.reset_tail and padded > n:
            slots[n:padded] = PAD_SLOT
        return {"position_ids": positions[:n].numpy(), "slot_mapping": slots[:padded].numpy(), "hazards": hazards}

    def _positions_step(self, inputs: Mapping[str, Any]) -> tuple[dict[str, Any], Any, Any, list[str]]:
        """The step's tensors, the persistent buffers, and the position op run into them (with its hazards)."""
        t = self._tensors(inputs)
        positions, slots = self._buffers(inputs)
        hazards: list[str] = []
        self.position_op(t["seq_lens_encoder"], t["seq_lens_decoder"], t["seq_lens_this_time"], positions, hazards)
        return t, positions, slots, hazards

    @staticmethod
    def _tensors(inputs: Mapping[str, Any]) -> dict[str, Any]:
        """The step's inputs as the runner holds them: the block table as a Paddle tensor; the per-request lengths
        (the position kernels' launch arguments) and the batch ids as int32 host arrays, since the models read
        them only on the host (``paddle_ops.gather_blocks`` indexes the table from host copies of its indices:
        a Paddle copy would be read back every call); the captured table (rows past ``bsz`` appended) is built
        only when a graph replay reads it."""
        out: dict[str, Any] = {n: np.ascontiguousarray(inputs[n], dtype=np.int32)
                               for n in ("seq_lens_encoder", "seq_lens_decoder", "seq_lens_this_time",
                                         "batch_id_per_token")}
        out["block_tables"] = paddle().to_tensor(np.ascontiguousarray(inputs["block_tables"], dtype=np.int32))
        return out

    @staticmethod
    def _captured_table(inputs: Mapping[str, Any], table: Any) -> Any:
        """The table a captured graph replays against: the running rows, then the capture's rows past ``bsz``."""
        past = np.asarray(inputs.get("block_tables_past_bsz", np.zeros((0, 0))), dtype=np.int32)
        if not past.shape[0]:
            return table
        captured = np.concatenate([np.asarray(inputs["block_tables"], dtype=np.int32),
                                   past.reshape(-1, int(table.shape[1]))])
        return paddle().to_tensor(np.ascontiguousarray(captured))


def launch(inputs: Mapping[str, Any]) -> int:
    """The runner's token count (``launch_num_tokens``; the real count for a plug-in's older mapping)."""
    return int(inputs.get("launch_num_tokens", inputs["num_tokens"]))


class Legacy(_PersistentPath):
    """Before #7367: v1 positions into the model's uninitialised buffer; in every layer, inside the
    captured graph, the indexer computes slots with block size 64 and the attention backend with the
    config block size over the padded launch. Padded rows carry batch id -1 and whatever the position
    buffer holds there; under graph replay -1 resolves against the captured table (rows past ``bsz``
    included), in an eager overlap step against the running requests' rows."""

    position_op = staticmethod(ops.positions_v1)
    uninitialised_positions = True

    def __call__(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        t, positions, _, hazards = self._positions_step(inputs)
        padded = int(inputs["padded_num_tokens"])
        replay = padded > launch(inputs)  # padded past the runner's count: a captured graph replays
        table = self._captured_table(inputs, t["block_tables"]) if replay else t["block_tables"]
        pos, bid, bs = positions[:padded], t["batch_id_per_token"], int(inputs["block_size"])
        layers = []
        for layer in range(self.num_layers):
            indexer = ops.per_layer_slots(table, pos, bid, LEGACY_INDEXER_BLOCK_SIZE, f"layer {layer} indexer")
            attention = ops.per_layer_slots(table, pos, bid, bs, f"layer {layer} attention")
            layers.append({"indexer": indexer.numpy(), "attention": attention.numpy()})
        return {
            "position_ids": positions[: int(inputs["num_tokens"])].numpy(),
            "layers": layers,
            "hazards": hazards,
        }


class SingleStep(_PersistentPath):
    """#7367: positions (v1 without the mask) and slots computed once per step in the runner, eagerly,
    into ``slot_mapping_buffer[:launch]`` (zero-filled at allocation, tail never reset); every consumer
    reads the buffer over the padded launch."""

    position_op = staticmethod(ops.positions_v1)
    reset_tail = False

    def __call__(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        t, positions, slots, hazards = self._positions_step(inputs)
        n, rows, padded = int(inputs["num_tokens"]), launch(inputs), int(inputs["padded_num_tokens"])
        if rows:
            slots[:rows] = ops.per_layer_slots(
                t["block_tables"], positions[:rows], t["batch_id_per_token"][:rows], int(inputs["block_size"]),
                "slot mapping")
        return self._single_step_result(positions, slots, n, padded, hazards)


class ChunkedFix(SingleStep):
    """#7727 positions (chunked prefill and prefix cache handled) with #7367's single-step slots."""

    position_op = staticmethod(ops.positions_v3)


class GetPositionIds(SingleStep):
    """The renamed ``get_position_ids`` op (prefix sums of ``this_time``) with single-step slots."""

    position_op = staticmethod(ops.positions_renamed)


class TailReset(SingleStep):
    """The proposed fix: #7367 plus ``slot_mapping_buffer[num_tokens:padded] = -1`` every step (vLLM's
    contract), so padded and overlap-estimate rows are skipped by both cache writers."""

    reset_tail = True


class Fused(_PersistentPath):
    """#7960: one kernel writes int64 positions and slots for the real tokens into the persistent buffers."""

    position_dtype = "int64"
    negative_batch_id_slot: int | None = None
    reset_tail = False

    def __call__(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        t = self._tensors(inputs)
        positions, slots = self._buffers(inputs)
        hazards: list[str] = []
        ops.fused_positions_and_slots(
            t["seq_lens_encoder"], t["seq_lens_decoder"], t["seq_lens_this_time"],
            paddle().to_tensor(t["batch_id_per_token"]),  # the fused kernel's model reads them in Paddle
            t["block_tables"], int(inputs["block_size"]), positions, slots, hazards,
            negative_batch_id_slot=self.negative_batch_id_slot)
        n, padded = int(inputs["num_tokens"]), int(inputs["padded_num_tokens"])
        return self._single_step_result(positions, slots, n, padded, hazards)


class TailResetFused(Fused):
    """The proposed fix on #7960's fused kernel: -1 for a negative batch id, and the tail reset every step."""

    negative_batch_id_slot = PAD_SLOT
    reset_tail = True
