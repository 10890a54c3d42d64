"""Paddle models of FastDeploy's position-id kernels and slot formulas (SPEC section 4).

Each position op is a one-thread-per-request CUDA kernel launched ``<<<1, bsz>>>`` that writes into
a persistent buffer of ``max_num_batched_tokens`` entries. Thread ``t`` computes its write offset
from the requests before it and writes one or two contiguous runs of positions. The models express
exactly those runs (offset, first value, count) as Paddle tensors and scatter them into the buffer,
so what lands where - including writes past the real token count - is what the kernel writes.

The per-layer slot formula is FastDeploy's Python: ``block_tables[batch_id_per_token, pos // bs]``,
the product ``id * bs`` taken in int32, then the cast to int64.
"""

from __future__ import annotations

from typing import Any

from validation.impls.faults import KernelFault, check_launch
from validation.impls.paddle_runtime import indexing_semantics, paddle

Tensor = Any  # paddle.Tensor, kept lazy so importing this module does not import Paddle


def _exclusive_cumsum(x: Tensor) -> Tensor:
    """Per-thread offsets as the kernel's int32 loop over earlier requests computes them."""
    pd = paddle()
    return (pd.cumsum(x.astype("int64")) - x.astype("int64")).astype("int32")


def write_runs(buffer: Tensor, dst: Tensor, first: Tensor, count: Tensor, op: str, hazards: list[str]) -> None:
    """Thread ``t`` writes ``buffer[dst[t] + i] = first[t] + i`` for ``i < count[t]`` (in place).

    Writes past the buffer are memory corruption on the GPU: they are dropped here and recorded
    in ``hazards`` so the comparison reports them.
    """
    pd = paddle()
    count64 = count.astype("int64")
    total = int(count64.sum())
    if total == 0:
        return
    thread = pd.repeat_interleave(pd.arange(count.shape[0], dtype="int64"), count64)
    run_start = pd.cumsum(count64) - count64
    local = pd.arange(total, dtype="int64") - pd.gather(run_start, thread)
    where = pd.gather(dst.astype("int64"), thread) + local
    value = (pd.gather(first.astype(buffer.dtype), thread) + local.astype(buffer.dtype))
    size = int(buffer.shape[0])
    inside = where < size
    spilled = total - int(inside.astype("int64").sum())
    if spilled:
        hazards.append(f"{op} wrote {spilled} entries past its buffer of {size} (index up to {int(where.max())})")
        where, value = pd.masked_select(where, inside), pd.masked_select(value, inside)
    buffer[where] = value


def positions_v1(enc: Tensor, dec: Tensor, this: Tensor, buffer: Tensor, hazards: list[str]) -> None:
    """``get_position_ids_and_mask_encoder_batch`` (before and at #7367; #7367 only dropped the mask).

    Offset of ``t``: sum of earlier ``enc`` plus earlier ``this`` where ``dec > 0``. Thread ``t`` writes
    ``enc[t]`` positions from 0, then, if ``dec[t] > 0``, ``this[t]`` positions from ``dec[t]``.
    The mask output is not modelled: no slot-mapping consumer reads it.
    """
    pd = paddle()
    check_launch("get_position_ids_and_mask_encoder_batch", int(enc.shape[0]))
    decode_count = pd.where(dec > 0, this, pd.zeros_like(this))
    offset = _exclusive_cumsum(enc + decode_count)
    # Both runs of every thread in one scatter: they never overlap, so the order of writes is moot.
    write_runs(buffer, pd.concat([offset, offset + enc]), pd.concat([pd.zeros_like(enc), dec]),
               pd.concat([enc, decode_count]), "position op (v1)", hazards)


def positions_v3(enc: Tensor, dec: Tensor, this: Tensor, buffer: Tensor, hazards: list[str]) -> None:
    """#7727: a prefilling request writes ``enc`` positions from ``dec``; a decoding one ``this`` from ``dec``."""
    pd = paddle()
    check_launch("get_position_ids_and_mask_encoder_batch (#7727)", int(enc.shape[0]))
    zero = pd.zeros_like(this)
    count = pd.where(enc > 0, enc, pd.where(dec > 0, this, zero))
    write_runs(buffer, _exclusive_cumsum(count), dec, count, "position op (v3)", hazards)


def positions_renamed(enc: Tensor, dec: Tensor, this: Tensor, buffer: Tensor, hazards: list[str]) -> None:
    """``get_position_ids``: offset is the prefix sum of ``this``; writes ``dec + i`` for ``i < this``."""
    check_launch("get_position_ids", int(enc.shape[0]))
    write_runs(buffer, _exclusive_cumsum(this), dec, this, "get_position_ids", hazards)


def gather_blocks(block_tables: Tensor, rows: Tensor, cols: Tensor, op: str) -> Tensor:
    """``block_tables[rows, cols]`` as Paddle evaluates it, made deterministic at the edges.

    Observed on Paddle: a row of -1 reads the last row (or raises, per ``indexing_semantics``); a
    column past a row reads the next row's memory (the table is one contiguous buffer). A read past
    the whole table would return garbage: it is raised as a ``KernelFault`` instead.
    """
    pd = paddle()
    bsz, width = (int(d) for d in block_tables.shape)
    rows64 = rows.astype("int64")
    if bool((rows64 < 0).any()):
        if not indexing_semantics().negative_row_wraps:
            raise KernelFault(f"{op}: Paddle raises on block_tables[-1, ...] (batch id -1 of a padded token)")
        rows64 = pd.where(rows64 < 0, rows64 + bsz, rows64)
    flat = rows64 * width + cols.astype("int64")
    if flat.shape[0] and (int(flat.max()) >= bsz * width or int(flat.min()) < 0):
        raise KernelFault(f"{op}: reads block_tables out of bounds (flat index {int(flat.max())} of {bsz * width})")
    return pd.gather(block_tables.reshape([-1]), flat)


def per_layer_slots(block_tables: Tensor, positions: Tensor, batch_ids: Tensor, block_size: int, op: str) -> Tensor:
    """FastDeploy's per-layer formula: ``(ids * bs + pos % bs).cast(int64)``, the product in int32."""
    pd = paddle()
    if positions.shape[0] == 0:
        return pd.zeros([0], dtype="int64")
    positions = positions.astype("int32")
    ids = gather_blocks(block_tables, batch_ids, positions // block_size, op)
    return (ids * block_size + positions % block_size).astype("int64")


def fused_positions_and_slots(
    enc: Tensor, dec: Tensor, this: Tensor, block_tables: Tensor, block_size: int,
    position_buffer: Tensor, slot_buffer: Tensor, hazards: list[str],
) -> None:
    """#7960 ``get_position_ids_and_slot_mapping``: positions as in ``get_position_ids`` (int64) and,
    in the same thread, each token's slot; no check for -1 blocks or a block index past the table.

    Assumption (the kernel source was not read): the slot is computed in int64, the block id
    promoted before the multiply, since the kernel's positions are int64.
    """
    pd = paddle()
    check_launch("get_position_ids_and_slot_mapping", int(enc.shape[0]))
    offset = _exclusive_cumsum(this)
    write_runs(position_buffer, offset, dec, this, "get_position_ids_and_slot_mapping", hazards)
    total = int(this.astype("int64").sum())
    if total == 0:
        return
    rows = pd.repeat_interleave(pd.arange(this.shape[0], dtype="int64"), this.astype("int64"))
    positions = position_buffer[:total].astype("int64")
    ids = gather_blocks(block_tables, rows, positions // block_size, "get_position_ids_and_slot_mapping")
    slot_buffer[:total] = ids.astype("int64") * block_size + positions % block_size
