"""Host-side plans for one paged forward: where each launched row writes, and what each real token reads.

Writes follow the slots the implementation under test computed (one array per layer and consumer); reads follow the
block tables, as FastDeploy's attention and indexer kernels do (``slot(p) = block_tables[b][p // bs] * bs + p % bs``),
independently of the implementation under test. Both are plain NumPy and built once per step (per distinct slot
array), so the per-layer Paddle work is a few batched gathers and scatters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class WritePlan:
    """Rows to write and their slots: negative slots skipped, and where two rows name one slot, the later row wins
    (one deterministic order; a real kernel's race has no defined winner)."""

    rows: np.ndarray  # int64 [W]
    slots: np.ndarray  # int64 [W]


def write_plan(slots: np.ndarray, num_rows: int, num_slots: int, layer: int, consumer: str) -> WritePlan:
    """Validate one consumer's slot array for one layer; a slot past the cache is an out-of-bounds write."""
    s = np.asarray(slots)
    if s.shape != (num_rows,) or not np.issubdtype(s.dtype, np.integer):
        raise ValueError(
            f"layer_slots[{layer}] {consumer}: expected an integer array of shape ({num_rows},), "
            f"got {s.dtype} {s.shape}"
        )
    s = s.astype(np.int64, copy=False)
    live = np.flatnonzero(s >= 0)
    past = live[s[live] >= num_slots]
    if past.size:
        row = int(past[0])
        raise IndexError(
            f"layer {layer} {consumer} cache: row {row} writes slot {int(s[row])}, "
            f"past the cache's {num_slots} slots"
        )
    newest_first = live[::-1]
    _, first = np.unique(s[newest_first], return_index=True)
    rows = np.sort(newest_first[first])
    return WritePlan(rows=rows, slots=s[rows])


@dataclass(frozen=True)
class ReadGroup:
    """Real tokens that read their context in one batched attention.

    ``shared`` groups hold the several tokens of one request (a prefill chunk): ``slots`` is ``[1, C]``, one context
    for all rows. Other groups hold one token per request (decode): ``slots`` is ``[n, C]``, a context per row.
    """

    rows: np.ndarray  # int64 [n]: launch rows of the tokens
    slots: np.ndarray  # int64 [1 or n, C]: cache slot of each context position (0 where not visible)
    visible: np.ndarray  # bool [n, C]: position p is visible to the token (p < token_context)
    is_self: np.ndarray  # bool [n, C]: position token_context - 1, the token itself
    shared: bool

    @property
    def context(self) -> int:
        return self.slots.shape[1]


def _context_slots(
    tables: np.ndarray, requests: np.ndarray, lengths: np.ndarray, block_size: int, num_slots: int
) -> np.ndarray:
    """``[n, max(lengths)]`` slots of context positions ``0..lengths[i]-1`` of ``requests[i]`` (0 past the end)."""
    positions = np.arange(int(lengths.max()), dtype=np.int64)[None, :]
    visible = positions < lengths[:, None]
    columns = positions // block_size
    past = visible & (columns >= tables.shape[1])
    if past.any():
        i, p = (int(v) for v in np.argwhere(past)[0])
        raise IndexError(
            f"block_tables[{int(requests[i])}]: context position {p} needs block column {p // block_size}, "
            f"past its {tables.shape[1]} columns"
        )
    blocks = tables[requests[:, None], np.minimum(columns, tables.shape[1] - 1)].astype(np.int64)
    slots = blocks * block_size + positions % block_size
    bad = visible & ((blocks < 0) | (slots >= num_slots))
    if bad.any():
        i, p = (int(v) for v in np.argwhere(bad)[0])
        raise IndexError(
            f"block_tables[{int(requests[i])}][{p // block_size}] = {int(blocks[i, p])}: context position {p} "
            f"reads slot {int(slots[i, p])}, outside the cache's {num_slots} slots"
        )
    return np.where(visible, slots, 0)


def read_groups(
    token_request: np.ndarray,
    token_context: np.ndarray,
    block_tables: np.ndarray,
    block_size: int,
    num_slots: int,
) -> list[ReadGroup]:
    """Group the real tokens: all single-token requests in one decode group, each multi-token request alone."""
    req = np.asarray(token_request, dtype=np.int64)
    ctx = np.asarray(token_context, dtype=np.int64)
    tables = np.asarray(block_tables)
    if req.shape != ctx.shape or req.ndim != 1:
        raise ValueError(f"token_request {req.shape} and token_context {ctx.shape} must be equal 1-D shapes")
    if tables.ndim != 2:
        raise ValueError(f"block_tables must be 2-D [bsz, max_blocks], got shape {tables.shape}")
    if req.size and (req.min() < 0 or req.max() >= tables.shape[0]):
        raise IndexError(f"token_request names a request outside block_tables' {tables.shape[0]} rows")
    if ctx.size and ctx.min() < 1:
        raise ValueError(f"token_context[{int(np.argmin(ctx))}] = {int(ctx.min())}: a token sees at least itself")

    requests, counts = np.unique(req, return_counts=True)
    groups: list[ReadGroup] = []
    singles = requests[counts == 1]
    if singles.size:
        rows = np.flatnonzero(np.isin(req, singles))
        slots = _context_slots(tables, req[rows], ctx[rows], block_size, num_slots)
        groups.append(_group(rows, slots, ctx[rows], shared=False))
    for r in requests[counts > 1]:
        rows = np.flatnonzero(req == r)
        slots = _context_slots(tables, req[rows[:1]], ctx[rows].max(keepdims=True), block_size, num_slots)
        groups.append(_group(rows, slots, ctx[rows], shared=True))
    return groups


def _group(rows: np.ndarray, slots: np.ndarray, ctx: np.ndarray, shared: bool) -> ReadGroup:
    positions = np.arange(slots.shape[1], dtype=np.int64)[None, :]
    return ReadGroup(
        rows=rows,
        slots=slots,
        visible=positions < ctx[:, None],
        is_self=positions == (ctx[:, None] - 1),
        shared=shared,
    )
