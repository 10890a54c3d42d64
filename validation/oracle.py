"""The truth, from first principles, in plain Python integers (SPEC section 2).

For request ``b`` and ``i < seq_lens_this_time[b]``: position ``seq_lens_decoder[b] + i``, logical block
``position // block_size``, slot ``block_tables[b][logical] * block_size + position % block_size``.
Tokens are packed request after request; every padded token must map to a negative slot.

This module deliberately shares no code with ``validation.impls``. ``truth`` does no array arithmetic: it
reads the state as Python lists, so a bug in numpy or Paddle integer semantics cannot hide on both
sides of a comparison. ``truth_arrays`` is the same formula in one numpy pass, in int64 (no product can
wrap: block ids are int32, block sizes small), for the fuzzer's fast path: a state whose observations all
equal it is judged right at once; anything else is triaged element by element against ``truth``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


class InvalidStateError(ValueError):
    """A real token has no slot: its logical block is -1 or past the table."""


@dataclass(frozen=True)
class TokenTruth:
    """What one packed token row must be; ``request is None`` for a CUDA-graph padding row."""

    token: int
    request: int | None
    position: int | None
    logical_block: int | None
    slot: int | None  # None: padding, any negative slot is right

    def accepts(self, slot: int) -> bool:
        """Whether ``slot`` is the right value for this row under the consumers' contract."""
        return slot < 0 if self.slot is None else slot == self.slot


@dataclass(frozen=True)
class Truth:
    """The oracle's answer for one state: one ``TokenTruth`` per launched token row."""

    tokens: tuple[TokenTruth, ...]
    num_tokens: int

    @property
    def positions(self) -> list[int]:
        return [t.position for t in self.tokens[: self.num_tokens]]  # type: ignore[misc]

    @property
    def slots(self) -> list[int]:
        """Slots as the consumers should read them; padding rows shown as -1."""
        return [-1 if t.slot is None else t.slot for t in self.tokens]


def truth(state: Any) -> Truth:
    """Compute the truth for a ``BatchState`` (or anything with ``to_dict()``) or a state mapping."""
    data: Mapping[str, Any] = state if isinstance(state, Mapping) else _fields(state)
    bs = int(data["block_size"])
    decoded: Sequence[int] = [int(x) for x in data["seq_lens_decoder"]]
    this_time: Sequence[int] = [int(x) for x in data["seq_lens_this_time"]]
    rows: list[TokenTruth] = []
    for request, (cached, count) in enumerate(zip(decoded, this_time)):
        if count <= 0:
            continue
        if cached < 0:  # a negative position has no block: never a wrapped index into the row's end
            raise InvalidStateError(f"request {request}: seq_lens_decoder {cached} is negative")
        row = data["block_tables"][request]  # only the rows a token reads, and of those only the cells
        width, first = len(row), cached // bs
        cells = _ints(row[first:(cached + count - 1) // bs + 1])
        for i in range(count):
            position = cached + i
            logical = position // bs
            if logical >= width or cells[logical - first] < 0:
                raise InvalidStateError(
                    f"request {request} position {position}: logical block {logical} is not allocated")
            slot = cells[logical - first] * bs + position % bs
            rows.append(TokenTruth(len(rows), request, position, logical, slot))
    num_tokens = len(rows)
    padded = data.get("padded_num_tokens")
    padded = num_tokens if padded is None else int(padded)
    for token in range(num_tokens, padded):
        rows.append(TokenTruth(token, None, None, None, None))
    return Truth(tuple(rows), num_tokens)


def truth_arrays(state: Any) -> tuple[Any, Any] | None:
    """``(positions int64 [num_tokens], slots int64 [launched rows])`` of a ``BatchState``, padding rows -1;
    ``None`` where a real token has no slot (``truth`` raises there, with the request named)."""
    import numpy as np  # noqa: PLC0415 - the plain-Python oracle above needs no numpy

    bs = int(state.block_size)
    this = np.asarray(state.seq_lens_this_time, dtype=np.int64)
    tables = np.asarray(state.block_tables, dtype=np.int64)
    n = int(this.sum())
    rows = np.repeat(np.arange(this.shape[0]), this)
    first = np.cumsum(this) - this  # each request's first packed row
    positions = np.asarray(state.seq_lens_decoder, dtype=np.int64)[rows] + np.arange(n) - first[rows]
    logical = positions // bs
    if n and (int(logical.max()) >= tables.shape[1] or int(logical.min()) < 0):
        return None
    ids = tables[rows, logical]
    if bool((ids < 0).any()):
        return None
    slots = np.full(max(n, int(state.padded_num_tokens)), -1, dtype=np.int64)
    slots[:n] = ids * bs + positions % bs
    return positions, slots


def _fields(state: Any) -> Mapping[str, Any]:
    """What the oracle reads of a ``BatchState`` (its arrays as they are), else the object's ``to_dict()``."""
    names = ("block_size", "seq_lens_decoder", "seq_lens_this_time", "block_tables", "padded_num_tokens")
    if all(hasattr(state, n) for n in names):
        return {n: getattr(state, n) for n in names}
    return state.to_dict()


def _ints(row: Any) -> list[int]:
    """A table row as Python ints (unbounded: ``id * bs`` never wraps here)."""
    return [int(x) for x in (row.tolist() if hasattr(row, "tolist") else row)]


class Oracle:
    """The oracle behind the plug-in seam, so it can stand as ``--baseline oracle``."""

    def __call__(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        import numpy as np

        result = truth(inputs)
        return {
            "position_ids": np.asarray(result.positions, dtype=np.int32),
            "slot_mapping": np.asarray(result.slots, dtype=np.int64),
        }
