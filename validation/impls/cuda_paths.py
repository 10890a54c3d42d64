"""The five code paths as real CUDA kernels on the GPU (through CuPy), for ``--backend cuda``.

Paddle with CUDA cannot be installed where the GPU is, so this backend runs the same kernels the
Paddle models describe, written in CUDA C (``cuda_kernels.cu``) and launched with FastDeploy's
launch shapes: position ops ``<<<1, bsz>>>``, the per-layer formula one thread per token row. The
persistent buffers are device arrays kept across steps, exactly as in ``paddle_paths`` (whose docstring
cites the FastDeploy lines each model follows): zero-filled single-step buffers, legacy's uninitialised
position buffer from the state's ``prior_position_ids``, batch id -1 resolved against the captured table.

Each path splits a step in two: ``launch`` is the device work alone (kernel launches on the current
stream, reading device-resident inputs, no host synchronisation, so ``validation.bench`` can capture
it into a CUDA graph), and ``__call__`` is the seam's call around it (inputs copied to the device,
each kernel's fault flag read as soon as it is launched, hazard counters and results read back).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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
    launch as launch_rows,
    prior_contents,
)

KERNELS = Path(__file__).with_name("cuda_kernels.cu")
THREADS = 256
DEVICE_INPUTS = ("seq_lens_encoder", "seq_lens_decoder", "seq_lens_this_time", "block_tables", "batch_id_per_token")
# A counter of [count, first index]: kernels add to the count and atomicMin the index.
_FRESH_FIRST = np.array([0, np.iinfo(np.int32).max], dtype=np.int32)

# Called after each kernel that can read outside the block table, with a function that says, given the
# first token row that did, what the read was: ``__call__`` reads the fault flag there and then (a faulting
# step stops where Paddle's would); a caller that captures the device work passes one that does not
# synchronise and reads the flags afterwards (``clean``).
FaultCheck = Callable[[Callable[[int], str]], None]


NO_CUPY = "cupy is not installed"


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
        return NO_CUPY
    except Exception as exc:  # noqa: BLE001 - any driver/runtime failure means: cannot run here
        return f"CUDA unavailable: {type(exc).__name__}: {exc}"
    return None


@dataclass
class Launched:
    """One step's device work, enqueued and not waited for: its outputs as device arrays, and what reads
    the step's hazard counters once it is done (each returns its hazards and zeroes its counter)."""

    position_ids: Any
    reports: list[Callable[[], list[str]]]
    slot_mapping: Any = None  # single-step paths: the persistent slot buffer's launched rows
    layers: list[dict[str, Any]] | None = None  # legacy: each layer's indexer and attention slots


class _CudaPath:
    """Persistent device buffers and counters, the step's device work, and the seam call around it."""

    kernel = "positions_v1"
    op_name = "position op (v1)"
    launch_name = "get_position_ids_and_mask_encoder_batch"
    position_dtype = np.int32
    uninitialised_positions = False

    def __init__(self, num_layers: int = DEFAULT_NUM_LAYERS) -> None:
        self.num_layers = num_layers
        self._positions: Any = None
        self._slots: Any = None
        # Set once; a kernel adds to them only when something goes wrong, and the host sets them back
        # after reporting it, so a step sees only its own spills and faults without a memset.
        self._spill: Any = None  # [writes past a buffer, highest index written]
        self._fault: Any = None  # [a read would leave the block table, first token row that did]
        self._before: Any = None  # fused: [reads before the table (batch id -1), first token that did]

    def __call__(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """One seam call: the inputs copied to the device, the step launched with each fault flag read as
        soon as its kernel is queued, then the hazard counters and the results read back."""
        step = self.launch(self.device_inputs(inputs), inputs, self._raise_on_fault)
        result: dict[str, Any] = {"position_ids": step.position_ids.get(),
                                  "hazards": [h for report in step.reports for h in report()]}
        if step.layers is not None:
            result["layers"] = [{c: slots.get() for c, slots in layer.items()} for layer in step.layers]
        else:
            result["slot_mapping"] = step.slot_mapping.get()
        return result

    def launch(self, d: Mapping[str, Any], inputs: Mapping[str, Any], check: FaultCheck) -> Launched:
        """The step's device work only: ``d`` is ``device_inputs(inputs)``, ``inputs`` the seam's mapping
        (read for the step's sizes only)."""
        raise NotImplementedError

    @staticmethod
    def device_inputs(inputs: Mapping[str, Any]) -> dict[str, Any]:
        """The step's arrays copied to the device, as ``launch`` reads them."""
        cp = cupy()
        out = {n: cp.asarray(np.ascontiguousarray(inputs[n], dtype=np.int32)) for n in DEVICE_INPUTS}
        tables = np.asarray(inputs["block_tables"], dtype=np.int32)
        past = np.asarray(inputs.get("block_tables_past_bsz", np.zeros((0, 0))), dtype=np.int32)
        if past.shape[0]:
            tables = np.concatenate([tables, past.reshape(-1, tables.shape[1])])
        out["captured_block_tables"] = cp.asarray(np.ascontiguousarray(tables))
        return out

    def clean(self) -> bool:
        """True when no kernel has counted a spill, a read before the table or a fault since the last
        report (reads the device)."""
        return self._spill is None or not any(int(c.get()[0]) for c in (self._spill, self._fault, self._before))

    def _buffers(self, inputs: Mapping[str, Any]) -> tuple[Any, Any]:
        cp = cupy()
        size = int(inputs["max_num_batched_tokens"])
        if self._positions is None or int(self._positions.shape[0]) != size:
            if self.uninitialised_positions:
                self._positions = cp.asarray(prior_contents(inputs, size).astype(self.position_dtype))
            else:
                self._positions = cp.full(size, POSITION_BUFFER_FILL, dtype=self.position_dtype)
            self._slots = cp.full(size, SLOT_BUFFER_FILL, dtype=np.int64)
        if self._spill is None:
            self._spill = cp.zeros(2, dtype=np.int32)
            self._fault, self._before = cp.asarray(_FRESH_FIRST), cp.asarray(_FRESH_FIRST)
        return self._positions, self._slots

    def _reset_counters(self) -> None:
        self._spill.fill(0)
        self._fault.set(_FRESH_FIRST)
        self._before.set(_FRESH_FIRST)

    def _raise_on_fault(self, describe: Callable[[int], str]) -> None:
        flag, token = (int(x) for x in self._fault.get())
        if flag:
            message = describe(token)
            self._reset_counters()
            raise KernelFault(message)

    def _spill_report(self, op: str, size: int) -> Callable[[], list[str]]:
        def report() -> list[str]:
            count, highest = (int(x) for x in self._spill.get())
            if not count:
                return []
            self._spill.fill(0)
            return [f"{op} wrote {count} entries past its buffer of {size} (index up to {highest})"]

        return report

    def _positions_step(self, d: Mapping[str, Any], positions: Any) -> Callable[[], list[str]]:
        bsz = int(d["seq_lens_this_time"].shape[0])
        check_launch(self.launch_name, bsz)
        if bsz:
            _module().get_function(self.kernel)(
                (1,), (bsz,), (d["seq_lens_encoder"], d["seq_lens_decoder"], d["seq_lens_this_time"], positions,
                               np.int32(positions.shape[0]), self._spill))
        return self._spill_report(self.op_name, int(positions.shape[0]))


def per_layer_slots(tables: Any, batch_ids: Any, positions: Any, n: int, block_size: int, fault: Any) -> Any:
    """Launch the per-layer formula over ``n`` token rows; a read outside the table sets ``fault``."""
    cp = cupy()
    out = cp.empty(n, dtype=np.int64)
    if n == 0:
        return out
    nrows, width = (int(x) for x in tables.shape)
    _module().get_function("per_layer_slots")(
        ((n + THREADS - 1) // THREADS,), (THREADS,),
        (tables, np.int32(nrows), np.int32(width), batch_ids, positions, np.int32(n), np.int32(block_size), out,
         fault))
    return out


def out_of_bounds(op: str, tables: Any, batch_ids: Any, positions: Any, block_size: int) -> Callable[[int], str]:
    """What a faulting token row of the per-layer formula read, with the same text as ``paddle_ops.gather_blocks``."""
    def describe(token: int) -> str:
        nrows, width = (int(x) for x in tables.shape)
        bid, pos = int(batch_ids[token].get()), int(positions[token].get())
        row = bid + nrows if bid < 0 else bid
        col = pos // block_size
        col = col + width if col < 0 else col
        return (f"{op}: reads block_tables out of bounds (token row {token}: flat index "
                f"{row * width + col} of {nrows * width})")

    return describe


class Legacy(_CudaPath):
    """See ``paddle_paths.Legacy``: v1 positions into the uninitialised buffer, then per layer the indexer
    (bs 64) and attention slots over the padded launch, -1 resolved against the captured table on replay."""

    uninitialised_positions = True

    def launch(self, d: Mapping[str, Any], inputs: Mapping[str, Any], check: FaultCheck) -> Launched:
        positions, _ = self._buffers(inputs)
        spills = self._positions_step(d, positions)
        padded, bs = int(inputs["padded_num_tokens"]), int(inputs["block_size"])
        table = d["captured_block_tables"] if padded > launch_rows(inputs) else d["block_tables"]
        bid = d["batch_id_per_token"]
        layers = []
        for layer in range(self.num_layers):
            indexer = per_layer_slots(table, bid, positions, padded, LEGACY_INDEXER_BLOCK_SIZE, self._fault)
            check(out_of_bounds(f"layer {layer} indexer", table, bid, positions, LEGACY_INDEXER_BLOCK_SIZE))
            attention = per_layer_slots(table, bid, positions, padded, bs, self._fault)
            check(out_of_bounds(f"layer {layer} attention", table, bid, positions, bs))
            layers.append({"indexer": indexer, "attention": attention})
        return Launched(positions[: int(inputs["num_tokens"])], [spills], layers=layers)


class SingleStep(_CudaPath):
    """See ``paddle_paths.SingleStep``: slots once per step into the zero-filled buffer's ``[:launch]``."""

    reset_tail = False

    def launch(self, d: Mapping[str, Any], inputs: Mapping[str, Any], check: FaultCheck) -> Launched:
        positions, slots = self._buffers(inputs)
        spills = self._positions_step(d, positions)
        n, rows, padded = int(inputs["num_tokens"]), launch_rows(inputs), int(inputs["padded_num_tokens"])
        bs, bid = int(inputs["block_size"]), d["batch_id_per_token"]
        fresh = per_layer_slots(d["block_tables"], bid, positions, rows, bs, self._fault)
        check(out_of_bounds("slot mapping", d["block_tables"], bid, positions, bs))
        slots[:rows] = fresh
        if self.reset_tail and padded > n:
            slots[n:padded] = PAD_SLOT
        return Launched(positions[:n], [spills], slot_mapping=slots[:padded])


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

    def launch(self, d: Mapping[str, Any], inputs: Mapping[str, Any], check: FaultCheck) -> Launched:
        positions, slots = self._buffers(inputs)
        bsz, width = (int(x) for x in d["block_tables"].shape)
        check_launch(FUSED_OP, bsz)
        bs = int(inputs["block_size"])
        if bsz:
            _module().get_function("fused_positions_and_slots")(
                (1,), (bsz,), (d["seq_lens_decoder"], d["seq_lens_this_time"], d["batch_id_per_token"],
                               d["block_tables"], np.int32(bsz), np.int32(width), np.int32(bs), positions, slots,
                               np.int32(positions.shape[0]), np.int32(self.fix_negative), np.int64(PAD_SLOT),
                               self._spill, self._fault, self._before))
        check(lambda _: f"{FUSED_OP}: reads block_tables out of bounds")
        n, padded = int(inputs["num_tokens"]), int(inputs["padded_num_tokens"])
        if self.fix_negative and padded > n:
            slots[n:padded] = PAD_SLOT
        return Launched(positions[:n], [self._spill_report(FUSED_OP, int(positions.shape[0])),
                                        self._before_report(d["batch_id_per_token"], positions, width, bs)],
                        slot_mapping=slots[:padded])

    def _before_report(self, batch_ids: Any, positions: Any, width: int, bs: int) -> Callable[[], list[str]]:
        def report() -> list[str]:
            count, first = (int(x) for x in self._before.get())
            if not count:
                return []
            self._before.set(_FRESH_FIRST)
            flat = int(batch_ids[first].get()) * width + int(positions[first].get()) // bs
            return [f"{FUSED_OP}: {count} token(s) with batch id -1 read block_tables before its start; "
                    f"first: token {first} reads element {flat} ({-4 * flat} bytes before the table)"]

        return report


class TailResetFused(Fused):
    """See ``paddle_paths.TailResetFused``: -1 for a negative batch id, and the tail reset every step."""

    fix_negative = True
