"""The five code paths as real CUDA kernels on the GPU (through CuPy), for ``--backend cuda``.

Paddle with CUDA cannot be installed where the GPU is, so this backend runs the same kernels the
Paddle models describe, written in CUDA C (``cuda_kernels.cu``) and launched with FastDeploy's
launch shapes: position ops ``<<<1, bsz>>>``, the per-layer formula one thread per token row. The
persistent buffers are device arrays kept across steps, exactly as in ``paddle_paths`` (whose docstring
cites the FastDeploy lines each model follows): zero-filled single-step buffers, legacy's uninitialised
position buffer from the state's ``prior_position_ids``, batch id -1 resolved against the captured table.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from validation.errors import MissingDependency
from validation.impls.faults import KernelFault, check_launch
from validation.impls.paddle_ops import FUSED_OP
from validation.impls.paddle_paths import (
    DEFAULT_NUM_LAYERS,
    LEGACY_INDEXER_BLOCK_SIZE,
    PAD_SLOT,
    POSITION_BUFFER_FILL,
    SLOT_BUFFER_FILL,
    launch,
    prior_contents,
)

KERNELS = Path(__file__).with_name("cuda_kernels.cu")
THREADS = 256


@functools.cache
def cupy() -> Any:
    try:
        import cupy as _cupy  # noqa: PLC0415 - optional, GPU only
    except ImportError:
        raise MissingDependency("cupy", "gpu", "the CUDA backend") from None
    return _cupy


@functools.cache
def _module() -> Any:
    return cupy().RawModule(code=KERNELS.read_text(), options=("-std=c++17",))


def available() -> str | None:
    """None when CUDA kernels can run here, else the reason they cannot (for skips)."""
    try:
        cp = cupy()
        if cp.cuda.runtime.getDeviceCount() < 1:
            return "no CUDA device"
    except MissingDependency:
        return "cupy is not installed"
    except Exception as exc:  # noqa: BLE001 - any driver/runtime failure means: cannot run here
        return f"CUDA unavailable: {type(exc).__name__}: {exc}"
    return None


def _spill_hazard(op: str, spill: Any, size: int) -> list[str]:
    count, highest = (int(x) for x in spill.get())
    return [f"{op} wrote {count} entries past its buffer of {size} (index up to {highest})"] if count else []


class _CudaPath:
    """Persistent device buffers and the host-to-device copy of the step inputs."""

    kernel = "positions_v1"
    op_name = "position op (v1)"
    launch_name = "get_position_ids_and_mask_encoder_batch"
    position_dtype = np.int32
    uninitialised_positions = False

    def __init__(self, num_layers: int = DEFAULT_NUM_LAYERS) -> None:
        self.num_layers = num_layers
        self._positions: Any = None
        self._slots: Any = None

    def _buffers(self, inputs: Mapping[str, Any]) -> tuple[Any, Any]:
        cp = cupy()
        size = int(inputs["max_num_batched_tokens"])
        if self._positions is None or int(self._positions.shape[0]) != size:
            if self.uninitialised_positions:
                self._positions = cp.asarray(prior_contents(inputs, size).astype(self.position_dtype))
            else:
                self._positions = cp.full(size, POSITION_BUFFER_FILL, dtype=self.position_dtype)
            self._slots = cp.full(size, SLOT_BUFFER_FILL, dtype=np.int64)
        return self._positions, self._slots

    @staticmethod
    def _device(inputs: Mapping[str, Any]) -> dict[str, Any]:
        cp = cupy()
        names = ("seq_lens_encoder", "seq_lens_decoder", "seq_lens_this_time", "block_tables", "batch_id_per_token")
        out = {n: cp.asarray(np.ascontiguousarray(inputs[n], dtype=np.int32)) for n in names}
        tables = np.asarray(inputs["block_tables"], dtype=np.int32)
        past = np.asarray(inputs.get("block_tables_past_bsz", np.zeros((0, 0))), dtype=np.int32)
        if past.shape[0]:
            tables = np.concatenate([tables, past.reshape(-1, tables.shape[1])])
        out["captured_block_tables"] = cp.asarray(np.ascontiguousarray(tables))
        return out

    def _positions_step(self, d: dict[str, Any], positions: Any) -> list[str]:
        cp = cupy()
        bsz = int(d["seq_lens_this_time"].shape[0])
        check_launch(self.launch_name, bsz)
        spill = cp.zeros(2, dtype=np.int32)
        if bsz:
            _module().get_function(self.kernel)(
                (1,), (bsz,), (d["seq_lens_encoder"], d["seq_lens_decoder"], d["seq_lens_this_time"], positions,
                               np.int32(positions.shape[0]), spill))
        return _spill_hazard(self.op_name, spill, int(positions.shape[0]))


def per_layer_slots(tables: Any, batch_ids: Any, positions: Any, n: int, block_size: int, op: str) -> Any:
    """Launch the per-layer formula over ``n`` token rows; a read outside the table is a ``KernelFault``
    with the same text as ``paddle_ops.gather_blocks``."""
    cp = cupy()
    out = cp.empty(n, dtype=np.int64)
    if n == 0:
        return out
    fault = cp.asarray(np.array([0, np.iinfo(np.int32).max], dtype=np.int32))
    nrows, width = (int(x) for x in tables.shape)
    _module().get_function("per_layer_slots")(
        ((n + THREADS - 1) // THREADS,), (THREADS,),
        (tables, np.int32(nrows), np.int32(width), batch_ids, positions, np.int32(n), np.int32(block_size), out,
         fault))
    flag, token = (int(x) for x in fault.get())
    if flag:
        bid, pos = int(batch_ids[token].get()), int(positions[token].get())
        row = bid + nrows if bid < 0 else bid
        col = pos // block_size
        col = col + width if col < 0 else col
        raise KernelFault(f"{op}: reads block_tables out of bounds (token row {token}: flat index "
                          f"{row * width + col} of {nrows * width})")
    return out


class Legacy(_CudaPath):
    """See ``paddle_paths.Legacy``: v1 positions into the uninitialised buffer, then per layer the indexer
    (bs 64) and attention slots over the padded launch, -1 resolved against the captured table on replay."""

    uninitialised_positions = True

    def __call__(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        d = self._device(inputs)
        positions, _ = self._buffers(inputs)
        hazards = self._positions_step(d, positions)
        padded, bs = int(inputs["padded_num_tokens"]), int(inputs["block_size"])
        table = d["captured_block_tables"] if padded > launch(inputs) else d["block_tables"]
        layers = []
        for layer in range(self.num_layers):
            layers.append({
                "indexer": per_layer_slots(table, d["batch_id_per_token"], positions, padded,
                                           LEGACY_INDEXER_BLOCK_SIZE, f"layer {layer} indexer").get(),
                "attention": per_layer_slots(table, d["batch_id_per_token"], positions, padded, bs,
                                             f"layer {layer} attention").get(),
            })
        return {"position_ids": positions[: int(inputs["num_tokens"])].get(), "layers": layers, "hazards": hazards}


class SingleStep(_CudaPath):
    """See ``paddle_paths.SingleStep``: slots once per step into the zero-filled buffer's ``[:launch]``."""

    reset_tail = False

    def __call__(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        d = self._device(inputs)
        positions, slots = self._buffers(inputs)
        hazards = self._positions_step(d, positions)
        n, rows, padded = int(inputs["num_tokens"]), launch(inputs), int(inputs["padded_num_tokens"])
        slots[:rows] = per_layer_slots(d["block_tables"], d["batch_id_per_token"], positions, rows,
                                       int(inputs["block_size"]), "slot mapping")
        if self.reset_tail and padded > n:
            slots[n:padded] = PAD_SLOT
        return {
            "position_ids": positions[:n].get(),
            "slot_mapping": slots[:padded].get(),
            "hazards": hazards,
        }


class ChunkedFix(SingleStep):
    kernel, op_name, launch_name = "positions_v3", "position op (v3)", "get_position_ids_and_mask_encoder_batch (#7727)"


class GetPositionIds(SingleStep):
    kernel, op_name, launch_name = "positions_renamed", "get_position_ids", "get_position_ids"


class TailReset(SingleStep):
    """See ``paddle_paths.TailReset``: #7367 with the tail set to -1 every step."""

    reset_tail = True


class Fused(_CudaPath):
    """See ``paddle_paths.Fused``: one kernel writes int64 positions and slots, batch ids read per token."""

    position_dtype = np.int64
    fix_negative = False

    def __call__(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        cp = cupy()
        d = self._device(inputs)
        positions, slots = self._buffers(inputs)
        bsz, width = (int(x) for x in d["block_tables"].shape)
        check_launch(FUSED_OP, bsz)
        spill, fault = cp.zeros(2, dtype=np.int32), cp.zeros(1, dtype=np.int32)
        before = cp.asarray(np.array([0, np.iinfo(np.int32).max], dtype=np.int32))
        bs = int(inputs["block_size"])
        if bsz:
            _module().get_function("fused_positions_and_slots")(
                (1,), (bsz,), (d["seq_lens_decoder"], d["seq_lens_this_time"], d["batch_id_per_token"],
                               d["block_tables"], np.int32(bsz), np.int32(width), np.int32(bs), positions, slots,
                               np.int32(positions.shape[0]), np.int32(self.fix_negative), np.int64(PAD_SLOT),
                               spill, fault, before))
        hazards = _spill_hazard(FUSED_OP, spill, int(positions.shape[0]))
        count, first = (int(x) for x in before.get())
        if count:
            flat = int(d["batch_id_per_token"][first].get()) * width + int(positions[first].get()) // bs
            hazards.append(f"{FUSED_OP}: {count} token(s) with batch id -1 read block_tables before its start; "
                           f"first: token {first} reads element {flat} ({-4 * flat} bytes before the table)")
        if int(fault.get()[0]):
            raise KernelFault(f"{FUSED_OP}: reads block_tables out of bounds")
        n, padded = int(inputs["num_tokens"]), int(inputs["padded_num_tokens"])
        if self.fix_negative and padded > n:
            slots[n:padded] = PAD_SLOT
        return {
            "position_ids": positions[:n].get(),
            "slot_mapping": slots[:padded].get(),
            "hazards": hazards,
        }


class TailResetFused(Fused):
    """See ``paddle_paths.TailResetFused``: -1 for a negative batch id, and the tail reset every step."""

    fix_negative = True
