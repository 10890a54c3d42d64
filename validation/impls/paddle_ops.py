"""Paddle models of FastDeploy's position-id kernels and slot formulas (SPEC section 4).

Each position op is a one-thread-per-request CUDA kernel launched ``<<<1, bsz>>>`` that writes into
a persistent buffer of ``max_num_batched_tokens`` entries. Thread ``t`` computes its write offset
from the requests before it and writes one or two contiguous runs of positions. The models compute
exactly those runs (offset, first value, count) on the host, a few integers per request, and scatter
them into the Paddle buffer in one write, so what lands where - including writes past the real token
count - is what the kernel writes.

The per-layer slot formula is FastDeploy's Python: ``block_tables[batch_id_per_token, pos // bs]``,
the product ``id * bs`` taken in int32, then the cast to int64. Its arithmetic runs in Paddle; the
index checks Paddle's indexing would make (negative rows, reads outside the table) run on the host copy
of the indices, since each one in Paddle is a device sync per call.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from validation.impls.faults import KernelFault, check_launch
from validation.impls.paddle_runtime import indexing_semantics, paddle

Tensor = Any  # paddle.Tensor, kept lazy so importing this module does not import Paddle


def _host(x: Tensor | np.ndarray) -> np.ndarray:
    """A small index array's values on the host (a kernel's launch arguments are a few integers per request;
    the runner models pass them as host arrays, FastDeploy's own lines as Paddle tensors)."""
    return x if isinstance(x, np.ndarray) else np.asarray(x.numpy())


def _exclusive_cumsum(x: np.ndarray) -> np.ndarray:
    """Per-thread offsets as the kernel's int32 loop over earlier requests computes them (wrapping past 2**31)."""
    x64 = x.astype(np.int64)
    return (np.cumsum(x64) - x64).astype(np.int32)


def write_runs(buffer: Tensor, dst: np.ndarray, first: np.ndarray, count: np.ndarray, op: str,
               hazards: list[str]) -> None:
    """Thread ``t`` writes ``buffer[dst[t] + i] = first[t] + i`` for ``i < count[t]`` (in place).

    The index arithmetic of a one-thread-per-request kernel is a handful of integers per request: it is done
    in numpy (the value in the buffer's dtype, so int32 wraps as on the GPU), and the writes land in the Paddle
    buffer in one scatter. Writes past the buffer are memory corruption on the GPU: they are dropped here and
    recorded in ``hazards`` so the comparison reports them.
    """
    count64 = count.astype(np.int64)
    total = int(count64.sum())
    if total == 0:
        return
    thread = np.repeat(np.arange(count64.shape[0]), count64)
    local = np.arange(total, dtype=np.int64) - (np.cumsum(count64) - count64)[thread]
    where = dst.astype(np.int64)[thread] + local
    dtype = np.int64 if buffer.dtype == paddle().int64 else np.int32  # the buffers are int32 or int64
    value = first.astype(dtype)[thread] + local.astype(dtype)
    size = int(buffer.shape[0])
    inside = where < size
    spilled = total - int(inside.sum())
    if spilled:
        hazards.append(f"{op} wrote {spilled} entries past its buffer of {size} (index up to {int(where.max())})")
        where, value = where[inside], value[inside]
    pd = paddle()
    buffer[pd.to_tensor(where)] = pd.to_tensor(value)


def positions_v1(enc: Tensor, dec: Tensor, this: Tensor, buffer: Tensor, hazards: list[str]) -> None:
    """``get_position_ids_and_mask_encoder_batch`` (before and at #7367; #7367 only dropped the mask).

    Offset of ``t``: sum of earlier ``enc`` plus earlier ``this`` where ``dec > 0``. Thread ``t`` writes
    ``enc[t]`` positions from 0, then, if ``dec[t] > 0``, ``this[t]`` positions from ``dec[t]``.
    The mask output is not modelled: no slot-mapping consumer reads it.
    """
    check_launch("get_position_ids_and_mask_encoder_batch", int(enc.shape[0]))
    e, d, t = _host(enc), _host(dec), _host(this)
    decode_count = np.where(d > 0, t, np.zeros_like(t))
    offset = _exclusive_cumsum(e + decode_count)
    # Both runs of every thread in one scatter: they never overlap, so the order of writes is moot.
    write_runs(buffer, np.concatenate([offset, offset + e]), np.concatenate([np.zeros_like(e), d]),
               np.concatenate([e, decode_count]), "position op (v1)", hazards)


def positions_v3(enc: Tensor, dec: Tensor, this: Tensor, buffer: Tensor, hazards: list[str]) -> None:
    """#7727: a prefilling request writes ``enc`` positions from ``dec``; a decoding one ``this`` from ``dec``."""
    check_launch("get_position_ids_and_mask_encoder_batch (#7727)", int(enc.shape[0]))
    e, d, t = _host(enc), _host(dec), _host(this)
    count = np.where(e > 0, e, np.where(d > 0, t, np.zeros_like(t)))
    write_runs(buffer, _exclusive_cumsum(count), d, count, "position op (v3)", hazards)


def positions_renamed(enc: Tensor, dec: Tensor, this: Tensor, buffer: Tensor, hazards: list[str]) -> None:
    """``get_position_ids``: offset is the prefix sum of ``this``; writes ``dec + i`` for ``i < this``."""
    check_launch("get_position_ids", int(enc.shape[0]))
    t = _host(this)
    write_runs(buffer, _exclusive_cumsum(t), _host(dec), t, "get_position_ids", hazards)


def gather_blocks(block_tables: Tensor, rows: Tensor | np.ndarray, cols: Tensor, op: str) -> Tensor:
    """``block_tables[rows, cols]`` as Paddle evaluates it, made deterministic at the edges.

    Observed on Paddle 3.3.1 (``indexing_semantics``): a negative index is normalised once per dimension
    (row -1 reads the last row, column -1 the row's last column: a stale negative position does that); a
    column past a row reads the next row's memory (the table is one contiguous buffer). A read outside
    the whole table returns garbage on the GPU: it is raised as a ``KernelFault`` naming the token row.
    """
    pd = paddle()
    nrows, width = (int(d) for d in block_tables.shape)
    semantics = indexing_semantics()
    rows64, cols64 = _host(rows).astype(np.int64), _host(cols).astype(np.int64)
    if bool((rows64 < 0).any()):
        if not semantics.negative_row_wraps:
            raise KernelFault(f"{op}: Paddle raises on block_tables[-1, ...] (batch id -1 of a padded token)")
        rows64 = np.where(rows64 < 0, rows64 + nrows, rows64)
    if semantics.negative_col_wraps and bool((cols64 < 0).any()):
        cols64 = np.where(cols64 < 0, cols64 + width, cols64)
    flat = rows64 * width + cols64
    outside = (flat < 0) | (flat >= nrows * width)
    if bool(outside.any()):
        token = int(np.flatnonzero(outside)[0])
        raise KernelFault(f"{op}: reads block_tables out of bounds (token row {token}: flat index "
                          f"{int(flat[token])} of {nrows * width})")
    return pd.gather(block_tables.reshape([-1]), pd.to_tensor(flat))


def per_layer_slots(block_tables: Tensor, positions: Tensor, batch_ids: Tensor | np.ndarray, block_size: int,
                    op: str) -> Tensor:
    """FastDeploy's per-layer formula: ``(ids * bs + pos % bs).cast(int64)``, the product in int32, ``//`` and
    ``%`` as Paddle takes them (floor, the divisor's sign: a stale negative position goes to the row's end)."""
    pd = paddle()
    if positions.shape[0] == 0:
        return pd.zeros([0], dtype="int64")
    positions = positions.astype("int32")
    ids = gather_blocks(block_tables, batch_ids, positions // block_size, op)
    return (ids * block_size + positions % block_size).astype("int64")


FUSED_OP = "get_position_ids_and_slot_mapping"


def fused_positions_and_slots(
    enc: Tensor, dec: Tensor, this: Tensor, batch_ids: Tensor, block_tables: Tensor, block_size: int,
    position_buffer: Tensor, slot_buffer: Tensor, hazards: list[str], *, negative_batch_id_slot: int | None = None,
) -> None:
    """#7960 ``get_position_ids_and_slot_mapping`` (custom_ops/gpu_ops/get_position_ids_and_slot_mapping.cu at
    7198b5883a0e, lines 29-62): thread ``t`` writes positions ``dec[t] + i`` (int64) at ``idx = offset + i``,
    reads ``batch_id = batch_id_per_token[idx]`` (line 55, not ``t``), ``block_id = block_tables[batch_id *
    max_num_blocks + pos / block_size]`` (line 58, unchecked) and writes ``int64(block_id) * block_size +
    pos % block_size`` (lines 61-62: the product in int64).

    A batch id of -1 reads the table's memory before its start: recorded as a hazard naming the token and
    the element, and that slot is left as the buffer held it (what the GPU writes there is unknown), never
    wrapped. ``negative_batch_id_slot`` is the proposed fix: write that slot (-1) for a negative batch id.
    A read past the table's last row is a ``KernelFault``.
    """
    pd = paddle()
    check_launch(FUSED_OP, int(enc.shape[0]))
    t = _host(this)
    write_runs(position_buffer, _exclusive_cumsum(t), _host(dec), t, FUSED_OP, hazards)
    total = int(t.astype(np.int64).sum())
    if total == 0:
        return
    nrows, width = (int(d) for d in block_tables.shape)
    positions = position_buffer[:total].astype("int64")
    bid = batch_ids[:total].astype("int64")
    flat = bid * width + positions // block_size  # positions >= 0: C's / and Paddle's // agree
    before = flat < 0
    if bool(before.any()):
        rows = pd.nonzero(before.astype("int32")).reshape([-1])
        if negative_batch_id_slot is None:
            first = int(rows[0])
            hazards.append(f"{FUSED_OP}: {int(rows.shape[0])} token(s) with batch id -1 read block_tables before its "
                           f"start; first: token {first} reads element {int(flat[first])} "
                           f"({-4 * int(flat[first])} bytes before the table)")
    if bool((flat >= nrows * width).any()):
        raise KernelFault(f"{FUSED_OP}: reads block_tables out of bounds")
    ids = pd.gather(block_tables.reshape([-1]), pd.where(before, pd.zeros_like(flat), flat)).astype("int64")
    slots = ids * block_size + positions % block_size
    if negative_batch_id_slot is not None:
        slots = pd.where(before, pd.full_like(slots, negative_batch_id_slot), slots)
    else:
        slots = pd.where(before, slot_buffer[:total], slots)
    slot_buffer[:total] = slots
