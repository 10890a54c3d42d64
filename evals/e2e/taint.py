"""Which cache entries of one e2e run hold something the truth would not, and which requests read them.

``dsa-validate e2e`` runs the same schedule three times; only the slots and positions differ. This
tracker follows one side against the oracle's run, step by step, per layer and consumer: a cache
entry is *dirty* when the side wrote it with a wrong position, wrote it from a row that was already
wrong, should have written it and wrote elsewhere, or overwrote it from a wrong slot (a padding row
included). A request is *tainted* once one of its rows had a wrong position or read a dirty entry
through its block table (every visible entry of every layer counts: the indexer may select any).

That separates causes that overlap in a run (a chunk continuation's v1 positions, a stale padded
tail) and makes a strong check possible: the logits of a request that is not tainted must be bit-for-bit
the oracle's. Conservative by design: a tainted request stays tainted, even if its logits happen to agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class TaintTracker:
    num_layers: int
    capacity: int  # slots in each cache
    block_size: int
    dirty: np.ndarray = field(init=False)
    cause: dict[int, str] = field(default_factory=dict)  # slot -> how it last became dirty
    tainted: dict[int, str] = field(default_factory=dict)  # request id -> why (first cause)
    first_taint_step: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.dirty = np.zeros((self.num_layers, 2, self.capacity), dtype=bool)

    def step(self, index: int, tables: np.ndarray, token_request: np.ndarray, token_context: np.ndarray,
             row_requests: dict[int, int], truth_positions: np.ndarray, truth_slots: np.ndarray,
             positions: np.ndarray, layer_slots: list[tuple[np.ndarray, np.ndarray]]) -> None:
        """Apply one step of the side: its positions and slots against the truth's."""
        n = truth_positions.shape[0]
        slots = np.stack([np.stack(pair) for pair in layer_slots])  # [L, 2, padded]
        rid = np.asarray([row_requests[int(b)] for b in token_request], dtype=np.int64)
        ok = np.asarray([int(r) not in self.tainted for r in rid], dtype=bool) & (positions[:n] == truth_positions)
        reason: dict[int, str] = {}
        for i in np.flatnonzero(positions[:n] != truth_positions):
            reason.setdefault(int(rid[i]), f"position {int(positions[i])} instead of {int(truth_positions[i])} "
                                           f"at step {index}")
        real = slots[:, :, :n]
        right = real == truth_slots[None, None, :]
        # Rows whose slot is right first write (correct content only from a row that is still right) ...
        for i in range(n):
            self.dirty[:, :, truth_slots[i]][right[:, :, i]] = not ok[i]
        # ... then every wrong write: the truth's entry was not refreshed, the slot hit holds garbage.
        for layer, consumer, i in zip(*np.nonzero(~right)):
            t, s = int(truth_slots[i]), int(real[layer, consumer, i])
            self._mark(layer, consumer, t, f"step {index}: request {int(rid[i])} position {int(truth_positions[i])} "
                                           f"was written to slot {s} instead")
            if 0 <= s < self.capacity:
                self._mark(layer, consumer, s, f"step {index}: overwritten by request {int(rid[i])} position "
                                               f"{int(truth_positions[i])} (its slot is {t})")
        for layer, consumer, i in zip(*np.nonzero(slots[:, :, n:] >= 0)):
            s = int(slots[layer, consumer, n + i])
            if s < self.capacity:
                self._mark(layer, consumer, s, f"step {index}: overwritten by padding row {n + i}")
        # Reads: a row that sees a dirty entry is wrong, and so is what it writes; repeat until stable
        # (a later row of the same request reads what an earlier one wrote in this step).
        while True:
            seen = self._reads_dirty(tables, token_request, token_context, n)
            newly = ok & seen[0]
            if not newly.any():
                break
            for i in np.flatnonzero(newly):
                ok[i] = False
                reason.setdefault(int(rid[i]), f"read {seen[1][i]}")
                self.dirty[:, :, truth_slots[i]] |= right[:, :, i]
                self.cause.setdefault(int(truth_slots[i]), f"step {index}: written by tainted request {int(rid[i])}")
        for i in np.flatnonzero(~ok):
            r = int(rid[i])
            if r not in self.tainted:
                self.tainted[r] = reason.get(r, "tainted earlier")
                self.first_taint_step[r] = index

    def _mark(self, layer: int, consumer: int, slot: int, why: str) -> None:
        if 0 <= slot < self.capacity:
            self.dirty[layer, consumer, slot] = True
            self.cause[slot] = why

    def _reads_dirty(self, tables: np.ndarray, token_request: np.ndarray, token_context: np.ndarray,
                     n: int) -> tuple[np.ndarray, dict[int, str]]:
        """Per real row: whether its visible context holds a dirty entry, and which (first) one."""
        bs = self.block_size
        any_dirty = self.dirty.any(axis=(0, 1))
        hit = np.zeros(n, dtype=bool)
        what: dict[int, str] = {}
        for i in range(n):
            p = np.arange(int(token_context[i]))
            ctx = tables[int(token_request[i]), p // bs].astype(np.int64) * bs + p % bs
            bad = np.flatnonzero(any_dirty[ctx])
            if bad.size:
                hit[i] = True
                slot = int(ctx[bad[0]])
                what[i] = f"slot {slot} (position {int(bad[0])}), {self.cause.get(slot, 'dirty')}"
        return hit, what
