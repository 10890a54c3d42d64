"""A catalogue of seeded bugs: faulty slot-mapping implementations the suite must kill.

Each mutant is a realistic mistake an engineer could make while refactoring slot mapping, written
as one overridden step of ``CorrectStep`` (a plain numpy single-step path that is right). Each
names the SPEC section 5 bug class it stands for and what it takes to reach it: some bugs show in
one state, some only across steps (``reach = "multi-step"``) or at block sizes other than 64
(``reach = "block-size sweep"``). They are plug-ins like any outside candidate:
``--candidate validation.impls.mutants:OffByOneDecode``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np


class CorrectStep:
    """A correct single-step path in numpy: positions, slots, padded tail reset to -1, every step.

    Kept deliberately separate from the oracle (vectorised numpy, not per-token integers) so the
    mutants below each differ from a right implementation by exactly one mistake.
    """

    bug_class: ClassVar[int] = 0
    description: ClassVar[str] = "no bug: the correct single-step path"
    reach: ClassVar[str] = "one state"

    def __init__(self) -> None:
        self.slot_buffer: np.ndarray | None = None

    def positions(self, enc: np.ndarray, dec: np.ndarray, this: np.ndarray) -> np.ndarray:
        start = np.repeat(np.cumsum(this) - this, this)
        within = np.arange(int(this.sum())) - start
        return (np.repeat(dec, this) + within).astype(np.int32)

    def rows(self, inputs: Mapping[str, Any], n: int) -> np.ndarray:
        """Which block-table row each real token reads."""
        return np.asarray(inputs["batch_id_per_token"][:n], dtype=np.int64)

    def logical_blocks(self, pos: np.ndarray, bs: int) -> np.ndarray:
        return pos.astype(np.int64) // bs

    def offsets(self, pos: np.ndarray, bs: int) -> np.ndarray:
        return pos.astype(np.int64) % bs

    def slots(self, ids: np.ndarray, pos: np.ndarray, bs: int) -> np.ndarray:
        return ids.astype(np.int64) * bs + self.offsets(pos, bs)

    def fill_tail(self, buffer: np.ndarray, n: int, padded: int) -> None:
        buffer[n:padded] = -1

    def finish(self, out: dict[str, Any], inputs: Mapping[str, Any]) -> dict[str, Any]:
        return out

    def __call__(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        enc = np.asarray(inputs["seq_lens_encoder"], dtype=np.int64)
        dec = np.asarray(inputs["seq_lens_decoder"], dtype=np.int64)
        this = np.asarray(inputs["seq_lens_this_time"], dtype=np.int64)
        tables = np.asarray(inputs["block_tables"], dtype=np.int32)
        bs, n, padded = int(inputs["block_size"]), int(inputs["num_tokens"]), int(inputs["padded_num_tokens"])
        size = int(inputs["max_num_batched_tokens"])
        if self.slot_buffer is None or self.slot_buffer.shape[0] != size:
            self.slot_buffer = np.full(size, -1, dtype=np.int64)
        pos = self.positions(enc, dec, this)
        ids = tables[self.rows(inputs, n), self.logical_blocks(pos, bs)] if n else np.zeros(0, np.int32)
        self.slot_buffer[:n] = self.slots(ids, pos, bs)
        self.fill_tail(self.slot_buffer, n, padded)
        out = {"position_ids": pos, "slot_mapping": self.slot_buffer[:padded].copy()}
        return self.finish(out, inputs)


class OffByOneDecode(CorrectStep):
    bug_class = 4
    description = "decode token written one position ahead (dec + 1): the new token's KV lands in the next slot"

    def positions(self, enc, dec, this):
        pos = super().positions(enc, dec, this)
        decoding = np.repeat((enc == 0) & (this == 1), this)
        return (pos + decoding).astype(np.int32)


class OffByOneMtp(CorrectStep):
    bug_class = 4
    description = "MTP draft tokens numbered from dec instead of dec + 1: each draft overwrites its predecessor"

    def positions(self, enc, dec, this):
        pos = super().positions(enc, dec, this)
        draft = np.repeat((enc == 0) & (this > 1), this) & (pos > np.repeat(dec, this))
        return (pos - draft).astype(np.int32)


class WrongBlockAtBlockEnd(CorrectStep):
    bug_class = 9
    description = "logical block computed as (pos + 1) // bs: the last slot of every block goes to the next block"

    def logical_blocks(self, pos, bs):
        return np.minimum((pos.astype(np.int64) + 1) // bs, self._width - 1)

    def __call__(self, inputs):
        self._width = np.asarray(inputs["block_tables"]).shape[1]
        return super().__call__(inputs)


class CompactedRequestIndex(CorrectStep):
    bug_class = 5
    description = "block table row looked up by index among scheduled requests, not by slot: wrong after an idle slot"

    def rows(self, inputs, n):
        this = np.asarray(inputs["seq_lens_this_time"], dtype=np.int64)
        active = np.flatnonzero(this > 0)
        return np.repeat(np.arange(active.shape[0]), this[active])[:n]


class PrefixHitRestartsAtZero(CorrectStep):
    bug_class = 1
    description = "a prefilling request's positions restart at 0 even with a cached prefix (prefix hit, later chunk)"

    def positions(self, enc, dec, this):
        return super().positions(enc, np.where(enc > 0, 0, dec), this)


class PaddedTailZeros(CorrectStep):
    bug_class = 3
    description = "CUDA-graph padding filled with 0, a live slot, instead of a negative one"

    def fill_tail(self, buffer, n, padded):
        buffer[n:padded] = 0


class StaleTail(CorrectStep):
    bug_class = 3
    description = "persistent slot buffer's tail never reset: padded rows keep last step's slots"
    reach = "multi-step"

    def fill_tail(self, buffer, n, padded):
        return None


class ReusePreviousMapping(CorrectStep):
    bug_class = 7
    description = "mapping cached by token count and reused when the next step has the same count"
    reach = "multi-step"

    def __init__(self) -> None:
        super().__init__()
        self._cache: dict[int, dict[str, Any]] = {}

    def __call__(self, inputs):
        key = int(inputs["num_tokens"])
        if key not in self._cache:
            self._cache[key] = super().__call__(inputs)
        return {k: v.copy() for k, v in self._cache[key].items()}


class IndexerHardcoded64(CorrectStep):
    bug_class = 2
    description = "the indexer's slots computed with block size 64 hard-coded, the attention's with the config"
    reach = "block-size sweep"

    def finish(self, out, inputs):
        tables = np.asarray(inputs["block_tables"], dtype=np.int64)
        n, padded = int(inputs["num_tokens"]), int(inputs["padded_num_tokens"])
        pos = out["position_ids"].astype(np.int64)
        indexer = np.full(padded, -1, dtype=np.int64)
        if n:
            logical = np.minimum(pos // 64, tables.shape[1] - 1)
            indexer[:n] = tables[self.rows(inputs, n), logical] * 64 + pos % 64
        out["indexer_slot_mapping"] = indexer
        return out


class BitmaskModulo(CorrectStep):
    bug_class = 2
    description = "pos & (bs - 1) and pos >> log2(bs): right only when the block size is a power of two"
    reach = "block-size sweep"

    def logical_blocks(self, pos, bs):
        return pos.astype(np.int64) >> int(np.log2(bs))

    def offsets(self, pos, bs):
        return pos.astype(np.int64) & (bs - 1)


class Int32Output(CorrectStep):
    bug_class = 10
    description = "slot_mapping returned as int32 (values right while they fit)"

    def finish(self, out, inputs):
        out["slot_mapping"] = out["slot_mapping"].astype(np.int32)
        return out


class Int32Product(CorrectStep):
    bug_class = 6
    description = "block_id * block_size computed in int32 before the cast: wraps past 2**31 / block_size"

    def slots(self, ids, pos, bs):
        product = (ids.astype(np.int64) * bs + self.offsets(pos, bs)) & 0xFFFFFFFF
        return np.where(product >= 2**31, product - 2**32, product).astype(np.int64)


class WrongPast255(CorrectStep):
    bug_class = 5
    description = "request index stored in a uint8: requests past index 255 read another request's blocks"

    def rows(self, inputs, n):
        return super().rows(inputs, n) & 0xFF


class WrongPast1023(CorrectStep):
    bug_class = 5
    description = "request index taken modulo the 1024-thread tile: requests past 1023 read another's blocks"

    def rows(self, inputs, n):
        return super().rows(inputs, n) % 1024


class RealTokensOnly(CorrectStep):
    bug_class = 3
    description = "mapping sized for the real tokens while the consumers read the padded count (out-of-bounds read)"

    def finish(self, out, inputs):
        out["slot_mapping"] = out["slot_mapping"][: int(inputs["num_tokens"])]
        return out


class DraftUsesLastAllocatedBlock(CorrectStep):
    bug_class = 4
    description = "MTP draft positions past the cached context clamped to the block of the last cached token"

    def __call__(self, inputs):
        self._dec = np.repeat(np.asarray(inputs["seq_lens_decoder"], np.int64),
                              np.asarray(inputs["seq_lens_this_time"], np.int64))
        self._enc = np.repeat(np.asarray(inputs["seq_lens_encoder"], np.int64),
                              np.asarray(inputs["seq_lens_this_time"], np.int64))
        return super().__call__(inputs)

    def logical_blocks(self, pos, bs):
        logical = super().logical_blocks(pos, bs)
        decoding = (self._enc == 0) & (self._dec > 0)
        return np.where(decoding, np.minimum(logical, self._dec // bs), logical)


class EstimatedTokenCount(CorrectStep):
    bug_class = 8
    description = "overlap schedule: slots computed over the estimated (padded) count, padding rows read via batch id -1"

    def fill_tail(self, buffer, n, padded):
        if padded > n:
            buffer[n:padded] = self._last_row_slots[: padded - n]

    def __call__(self, inputs):
        tables = np.asarray(inputs["block_tables"], dtype=np.int64)
        bs = int(inputs["block_size"])
        self._last_row_slots = tables[-1, 0] * bs + np.arange(int(inputs["padded_num_tokens"])) % bs if tables.size else []
        return super().__call__(inputs)


class IdleSlotCountsOneToken(CorrectStep):
    bug_class = 5
    description = "packing offsets from max(this_time, 1): each idle slot shifts every later request by one row"

    def positions(self, enc, dec, this):
        pos = super().positions(enc, dec, this)
        width = np.maximum(this, 1)
        rows = np.repeat(np.cumsum(width) - width, this) + (np.arange(pos.shape[0]) - np.repeat(np.cumsum(this) - this, this))
        packed = np.zeros(int(width.sum()), dtype=np.int32)
        packed[rows] = pos
        return packed[: pos.shape[0]]


MUTANTS: dict[str, type[CorrectStep]] = {
    cls.__name__: cls
    for cls in (
        OffByOneDecode, OffByOneMtp, WrongBlockAtBlockEnd, CompactedRequestIndex, PrefixHitRestartsAtZero,
        PaddedTailZeros, StaleTail, ReusePreviousMapping, IndexerHardcoded64, BitmaskModulo, Int32Output,
        Int32Product, WrongPast255, WrongPast1023, RealTokensOnly, DraftUsesLastAllocatedBlock,
        EstimatedTokenCount, IdleSlotCountsOneToken,
    )
}
