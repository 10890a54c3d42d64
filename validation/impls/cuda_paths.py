"""The five code paths as real CUDA kernels on the GPU (through CuPy), for ``--backend cuda``.

Paddle with CUDA cannot be installed where the GPU is, so this backend runs the same kernels the
Paddle models describe, written in CUDA C (``cuda_kernels.cu``) and launched with FastDeploy's
launch shapes: position ops ``<<<1, bsz>>>``, the per-layer formula one thread per token row. The
persistent buffers are device arrays kept across steps, exactly as in ``paddle_paths``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from validation.errors import MissingDependency
from validation.impls.faults import KernelFault, check_launch
from validation.impls.paddle_paths import (
    DEFAULT_NUM_LAYERS,
    LEGACY_INDEXER_BLOCK_SIZE,
    POSITION_BUFFER_FILL,
    SLOT_BUFFER_FILL,
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

    def __init__(self, num_layers: int = DEFAULT_NUM_LAYERS) -> None:
        self.num_layers = num_layers
        self._positions: Any = None
        self._slots: Any = None

    def _buffers(self, size: int) -> tuple[Any, Any]:
        cp = cupy()
        if self._positions is None or int(self._positions.shape[0]) != size:
            self._positions = cp.full(size, POSITION_BUFFER_FILL, dtype=self.position_dtype)
            self._slots = cp.full(size, SLOT_BUFFER_FILL, dtype=np.int64)
        return self._positions, self._slots

    @staticmethod
    def _device(inputs: Mapping[str, Any]) -> dict[str, Any]:
        cp = cupy()
        names = ("seq_lens_encoder", "seq_lens_decoder", "seq_lens_this_time", "block_tables", "batch_id_per_token")
        return {n: cp.asarray(np.ascontiguousarray(inputs[n], dtype=np.int32)) for n in names}

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
    """Launch the per-layer formula over ``n`` token rows; a read outside the table is a ``KernelFault``."""
    cp = cupy()
    out = cp.empty(n, dtype=np.int64)
    if n == 0:
        return out
    fault = cp.zeros(1, dtype=np.int32)
    bsz, width = (int(x) for x in tables.shape)
    _module().get_function("per_layer_slots")(
        ((n + THREADS - 1) // THREADS,), (THREADS,),
        (tables, np.int32(bsz), np.int32(width), batch_ids, positions, np.int32(n), np.int32(block_size), out, fault))
    if int(fault.get()[0]):
        raise KernelFault(f"{op}: reads block_tables out of bounds")
    return out


class Legacy(_CudaPath):
    """See ``paddle_paths.Legacy``: v1 positions, then per layer the indexer (bs 64) and attention slots."""

    def __call__(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        d = self._device(inputs)
        positions, _ = self._buffers(int(inputs["max_num_batched_tokens"]))
        hazards = self._positions_step(d, positions)
        launch, bs = int(inputs["padded_num_tokens"]), int(inputs["block_size"])
        layers = []
        for layer in range(self.num_layers):
            layers.append({
                "indexer": per_layer_slots(d["block_tables"], d["batch_id_per_token"], positions, launch,
                                           LEGACY_INDEXER_BLOCK_SIZE, f"layer {layer} indexer").get(),
                "attention": per_layer_slots(d["block_tables"], d["batch_id_per_token"], positions, launch, bs,
                                             f"layer {layer} attention").get(),
            })
        return {"position_ids": positions[: int(inputs["num_tokens"])].get(), "layers": layers, "hazards": hazards}


class SingleStep(_CudaPath):
    """See ``paddle_paths.SingleStep``: slots once per step into the persistent buffer's head."""

    def __call__(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        d = self._device(inputs)
        positions, slots = self._buffers(int(inputs["max_num_batched_tokens"]))
        hazards = self._positions_step(d, positions)
        n = int(inputs["num_tokens"])
        slots[:n] = per_layer_slots(d["block_tables"], d["batch_id_per_token"], positions, n,
                                    int(inputs["block_size"]), "slot mapping")
        return {
            "position_ids": positions[:n].get(),
            "slot_mapping": slots[: int(inputs["padded_num_tokens"])].get(),
            "hazards": hazards,
        }


class ChunkedFix(SingleStep):
    kernel, op_name, launch_name = "positions_v3", "position op (v3)", "get_position_ids_and_mask_encoder_batch (#7727)"


class GetPositionIds(SingleStep):
    kernel, op_name, launch_name = "positions_renamed", "get_position_ids", "get_position_ids"


class Fused(_CudaPath):
    """See ``paddle_paths.Fused``: one kernel writes int64 positions and slots."""

    position_dtype = np.int64

    def __call__(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        cp = cupy()
        d = self._device(inputs)
        positions, slots = self._buffers(int(inputs["max_num_batched_tokens"]))
        bsz, width = (int(x) for x in d["block_tables"].shape)
        check_launch("get_position_ids_and_slot_mapping", bsz)
        spill, fault = cp.zeros(2, dtype=np.int32), cp.zeros(1, dtype=np.int32)
        if bsz:
            _module().get_function("fused_positions_and_slots")(
                (1,), (bsz,), (d["seq_lens_decoder"], d["seq_lens_this_time"], d["block_tables"], np.int32(bsz),
                               np.int32(width), np.int32(inputs["block_size"]), positions, slots,
                               np.int32(positions.shape[0]), spill, fault))
        if int(fault.get()[0]):
            raise KernelFault("get_position_ids_and_slot_mapping: reads block_tables out of bounds")
        return {
            "position_ids": positions[: int(inputs["num_tokens"])].get(),
            "slot_mapping": slots[: int(inputs["padded_num_tokens"])].get(),
            "hazards": _spill_hazard("get_position_ids_and_slot_mapping", spill, int(positions.shape[0])),
        }
