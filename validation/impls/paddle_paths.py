"""The five historical FastDeploy code paths, as Paddle programs with their persistent buffers.

Each class is a plug-in implementation: instantiated once per test case (or per multi-step run),
called once per step with the seam's input mapping, returning what every consumer of every layer
reads. Persistent buffers are allocated on the first call and never reset, as in the model runner,
so a stale tail left by an earlier step is visible to the next one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from validation.impls import paddle_ops as ops
from validation.impls.paddle_runtime import paddle

# The legacy DSA indexer hard-coded 64 tokens per block (SPEC section 4).
LEGACY_INDEXER_BLOCK_SIZE = 64
# How many decoder layers the legacy path recomputes slots in; DeepSeek-V3.2 has 61, 4 shows the pattern.
DEFAULT_NUM_LAYERS = 4
# Initial contents of the persistent slot buffer: the record does not say; -1 is the most favourable
# choice, so any padding finding comes from staleness, not from the initial fill.
SLOT_BUFFER_FILL = -1
POSITION_BUFFER_FILL = 0

PositionOp = Callable[..., None]


class _PersistentPath:
    """Shared machinery: the runner's persistent buffers and the conversion of the step inputs."""

    position_op: PositionOp
    position_dtype = "int32"

    def __init__(self, num_layers: int = DEFAULT_NUM_LAYERS) -> None:
        self.num_layers = num_layers
        self._positions: Any = None
        self._slots: Any = None

    def _buffers(self, size: int) -> tuple[Any, Any]:
        """Allocate once per engine (per buffer size); later steps reuse them untouched."""
        pd = paddle()
        if self._positions is None or int(self._positions.shape[0]) != size:
            self._positions = pd.full([size], POSITION_BUFFER_FILL, dtype=self.position_dtype)
            self._slots = pd.full([size], SLOT_BUFFER_FILL, dtype="int64")
        return self._positions, self._slots

    def _positions_step(self, inputs: Mapping[str, Any]) -> tuple[dict[str, Any], Any, Any, list[str]]:
        """The step's tensors, the persistent buffers, and the position op run into them (with its hazards)."""
        t = self._tensors(inputs)
        positions, slots = self._buffers(int(inputs["max_num_batched_tokens"]))
        hazards: list[str] = []
        self.position_op(t["seq_lens_encoder"], t["seq_lens_decoder"], t["seq_lens_this_time"], positions, hazards)
        return t, positions, slots, hazards

    @staticmethod
    def _tensors(inputs: Mapping[str, Any]) -> dict[str, Any]:
        pd = paddle()
        names = ("seq_lens_encoder", "seq_lens_decoder", "seq_lens_this_time", "block_tables", "batch_id_per_token")
        return {n: pd.to_tensor(np.ascontiguousarray(inputs[n], dtype=np.int32)) for n in names}


class Legacy(_PersistentPath):
    """Before #7367: v1 positions in the model's pre-process; in every layer the indexer computes
    slots with block size 64 and the attention backend with the config block size, both over the
    padded launch (padded tokens carry batch id -1 and whatever the position buffer's tail holds)."""

    position_op = staticmethod(ops.positions_v1)

    def __call__(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        t, positions, _, hazards = self._positions_step(inputs)
        launch = int(inputs["padded_num_tokens"])
        pos, bid, bs = positions[:launch], t["batch_id_per_token"], int(inputs["block_size"])
        layers = []
        for layer in range(self.num_layers):
            indexer = ops.per_layer_slots(t["block_tables"], pos, bid, LEGACY_INDEXER_BLOCK_SIZE, f"layer {layer} indexer")
            attention = ops.per_layer_slots(t["block_tables"], pos, bid, bs, f"layer {layer} attention")
            layers.append({"indexer": indexer.numpy(), "attention": attention.numpy()})
        return {
            "position_ids": positions[: int(inputs["num_tokens"])].numpy(),
            "layers": layers,
            "hazards": hazards,
        }


class SingleStep(_PersistentPath):
    """#7367: positions (v1 without the mask) and slots computed once per step in the runner, slots
    written to ``slot_mapping_buffer[:num_tokens]`` (tail never reset), read by every consumer over
    the padded launch."""

    position_op = staticmethod(ops.positions_v1)

    def __call__(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        t, positions, slots, hazards = self._positions_step(inputs)
        n = int(inputs["num_tokens"])
        if n:
            slots[:n] = ops.per_layer_slots(
                t["block_tables"], positions[:n], t["batch_id_per_token"][:n], int(inputs["block_size"]),
                "slot mapping")
        return {
            "position_ids": positions[:n].numpy(),
            "slot_mapping": slots[: int(inputs["padded_num_tokens"])].numpy(),
            "hazards": hazards,
        }


class ChunkedFix(SingleStep):
    """#7727 positions (chunked prefill and prefix cache handled) with #7367's single-step slots."""

    position_op = staticmethod(ops.positions_v3)


class GetPositionIds(SingleStep):
    """The renamed ``get_position_ids`` op (prefix sums of ``this_time``) with single-step slots."""

    position_op = staticmethod(ops.positions_renamed)


class Fused(_PersistentPath):
    """#7960: one kernel writes int64 positions and slots into the persistent buffers."""

    position_dtype = "int64"

    def __call__(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        t = self._tensors(inputs)
        positions, slots = self._buffers(int(inputs["max_num_batched_tokens"]))
        hazards: list[str] = []
        ops.fused_positions_and_slots(
            t["seq_lens_encoder"], t["seq_lens_decoder"], t["seq_lens_this_time"], t["block_tables"],
            int(inputs["block_size"]), positions, slots, hazards)
        return {
            "position_ids": positions[: int(inputs["num_tokens"])].numpy(),
            "slot_mapping": slots[: int(inputs["padded_num_tokens"])].numpy(),
            "hazards": hazards,
        }
