"""Test-case reduction after hypothesis: a failing state cut down to what its failure needs.

Why: hypothesis shrinks what it drew (a dozen knobs and a seed), not the state the scheduler model built from
them, and it never shrinks a pinned ``@example``. Seeded bugs in the row lookup of requests past index 63 or
255 were reported on a pinned 300-request state, a 16-bit position wrap on a table of 1,467 blocks. A reader
needs the smallest state that still shows the bug. This works on the state itself, greedily and
deterministically, in the manner of delta debugging: it drops the runner fields and the padding, cuts trailing
and leading requests by bisection, empties slots in chunks, drops the empty ones, lowers each request's lengths,
trims the block table and renumbers its block ids. A change is kept only when the state is still one a server
could make (``BatchState.validate``; no request writes a block another request's row holds; the padding is one
FastDeploy launches, on the failing state's server; the last two bind only a failing state that kept them) and the
property still fails the same way (a failing finding of a verdict and consumer the original failure had). At most
``MAX_EVALUATIONS`` property calls per state reduced: seconds, never minutes. A case with earlier steps (a pinned
multi-step case, or the state machine's failing step after hypothesis has shrunk the machine's run) is reduced
with its steps replayed first on every trial: the earlier steps the failure does not need are dropped (the start-up's
among them), the last state is reduced, then each earlier step; the budget is shared by all of it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from properties.checks import CHECKS
from properties.collector import Collector
from properties.config import FuzzConfig
from properties.profiles import MACHINE
from properties.strategies import Case
from validation import compare
from validation.compare import Report
from validation.errors import InputError
from validation.launch_padding import MAX_NUM_SEQS, MAX_OVERLAP, capture_launch
from validation.state import BatchState, ranges

Fails = Callable[[BatchState], bool]
MAX_EVALUATIONS = 400
# The deepest MTP draft the scheduler model gives a request (``strategies._plan``): capture sizes scale by k + 1.
MAX_DRAFTS = 4
# Chunked passes stop refining once a level has more chunks than this: on a state of a thousand requests that
# must all stay (a bug in request 1,024), one request at a time would spend the whole budget on refusals.
MAX_CHUNKS = 64


def reduce_failure(name: str, config: FuzzConfig, collector: Collector) -> bool:
    """Reduce the failing case of property ``name`` and keep the result as its counterexample; whether it got
    smaller. A single-step property judges each trial with its own check; the state machine with the triage it
    ran on its failing step, after the earlier steps replayed through fresh instances (``compare.compare_state``)."""
    failure = collector.failures.get(name)
    check = CHECKS.get(name, _machine_step if name == MACHINE else None)
    if failure is None or check is None:
        return False
    case, report = failure
    wanted = collector.failing_kinds(case, report)

    def fails(history: tuple[BatchState, ...], state: BatchState) -> bool:
        candidate = Case.of(state, history=history)
        return bool(collector.failing_kinds(candidate, check(candidate, config)) & wanted)

    history, last = reduce_steps(case.history, case.state, fails, deadline=collector.deadline)
    if last is case.state and history == case.history:
        return False
    reduced = Case.of(last, history=history)
    collector.adopt(name, reduced, check(reduced, config), case)
    return True


def _machine_step(case: Case, config: FuzzConfig) -> Report:
    """What the state machine judged on its last step: both sides fed the earlier steps, the last one triaged."""
    return compare.compare_state(case.state, config.baseline_impl, config.candidate_impl, config.layers, case.history,
                                 pad_contract=config.pad_contract)


def reduce_steps(history: tuple[BatchState, ...], last: BatchState,
                 fails: Callable[[tuple[BatchState, ...], BatchState], bool], *, limit: int = 2 * MAX_EVALUATIONS,
                 deadline: float | None = None) -> tuple[tuple[BatchState, ...], BatchState]:
    """The smallest steps the passes reach for which ``fails(history, last)`` holds: earlier steps dropped where the
    failure does not need them (oldest first), the last state reduced, then each earlier step that is left; at most
    ``MAX_EVALUATIONS`` calls of ``fails`` per state reduced and ``limit`` in all (each call replays every step)."""
    calls = [0]

    def counted(steps: tuple[BatchState, ...], state: BatchState) -> bool:
        calls[0] += 1
        return fails(steps, state)

    def spent() -> bool:
        return calls[0] >= limit or (deadline is not None and time.perf_counter() >= deadline)

    steps = list(history)
    i = 0
    while i < len(steps) and not spent():
        without = tuple(steps[:i] + steps[i + 1:])
        if counted(without, last):
            steps = list(without)
        else:
            i += 1
    last = reduce_state(last, lambda state: counted(tuple(steps), state),
                        limit=min(MAX_EVALUATIONS, limit - calls[0]), deadline=deadline)
    for j in range(len(steps)):
        if spent():
            break
        steps[j] = reduce_state(steps[j], lambda state: counted(tuple(steps[:j] + [state] + steps[j + 1:]), last),
                                limit=min(MAX_EVALUATIONS, limit - calls[0]), deadline=deadline)
    return tuple(steps), last


def reduce_state(state: BatchState, fails: Fails, *, limit: int = MAX_EVALUATIONS,
                 deadline: float | None = None) -> BatchState:
    """The smallest state the passes reach from ``state`` for which ``fails`` holds (``state`` itself if none)."""
    trial = _Trial(fails, limit, deadline, _Rules.kept_by(state))
    current, changed = state, True
    while changed and not trial.spent:
        changed = False
        for reduce_pass in PASSES:
            smaller = reduce_pass(current, trial)
            if smaller is not None:
                current, changed = smaller, True
    return current


class _Trial:
    """Runs the property on a candidate state, within the budget; refuses states a server could not make."""

    def __init__(self, fails: Fails, limit: int, deadline: float | None, rules: _Rules) -> None:
        self.fails, self.limit, self.deadline, self.rules = fails, limit, deadline, rules
        self.used = 0
        self.seen: dict[bytes, bool] = {}  # a later round of the passes proposes many of the same candidates

    @property
    def spent(self) -> bool:
        return self.used >= self.limit or (self.deadline is not None and time.perf_counter() >= self.deadline)

    def __call__(self, candidate: BatchState) -> bool:
        if self.spent:
            return False
        try:
            candidate.validate()
        except InputError:
            return False
        if not self.rules.hold(candidate):
            return False
        key = _digest(candidate)
        if key not in self.seen:
            self.used += 1
            self.seen[key] = self.fails(candidate)
        return self.seen[key]


def _digest(state: BatchState) -> bytes:
    """Every field of a state, as bytes (equal states, equal digests)."""
    digest = hashlib.sha256()
    for field in dataclasses.fields(state):
        value = getattr(state, field.name)
        if isinstance(value, np.ndarray):
            digest.update(f"{field.name}{value.dtype}{value.shape}".encode() + value.tobytes())
        else:
            digest.update(f"{field.name}={value!r};".encode())
    return digest.digest()


def _writes_own_blocks(state: BatchState) -> bool:
    """No block a request writes this step sits in another request's row (prefix blocks are shared read-only)."""
    live = np.flatnonzero(state.seq_lens_this_time > 0)
    if live.size == 0:
        return True
    table, bs, bsz = state.block_tables.astype(np.int64), state.block_size, state.bsz
    dec = state.seq_lens_decoder[live].astype(np.int64)
    first, last = dec // bs, (dec + state.seq_lens_this_time[live] - 1) // bs
    counts = last - first + 1
    written = table[np.repeat(live, counts), ranges(first, counts)]
    held = table >= 0
    pairs = np.unique(table[held] * bsz + np.nonzero(held)[0])  # each (block, row) holding it once
    ids, rows_holding = np.unique(pairs // bsz, return_counts=True)
    return bool((rows_holding[np.searchsorted(ids, written)] == 1).all())


def _launch_plausible(state: BatchState, server: tuple[int, int] | None = None) -> bool:
    """The padding is one FastDeploy launches (``validation.launch_padding``): none; or, in a decode-only step with
    real tokens, the overlap estimate (the runner's own count, at most ``MAX_OVERLAP`` over) or the next capture
    size up, on ``server`` when given, else on any ``_capture_config``."""
    n, padded = state.num_tokens, state.padded_num_tokens
    if padded == n:
        return True
    if n == 0 or bool((state.seq_lens_encoder > 0).any()):
        return False
    if state.launch_num_tokens == padded:
        return padded - n <= MAX_OVERLAP
    if server is not None:
        return capture_launch(n, server[0], num_speculative_tokens=server[1]) == padded
    return _capture_config(state) is not None


def _capture_config(state: BatchState) -> tuple[int, int] | None:
    """``(max_num_seqs, drafts)`` under which a graph replay launches exactly ``padded_num_tokens`` rows: the
    default 512, or a server whose ``max_num_seqs`` is the launch itself [inferred: any value up to 512 is a legal
    setting, and the capture list then ends there]."""
    rows = state.bsz + state.past_rows.shape[0]
    for drafts in range(MAX_DRAFTS + 1):
        for max_num_seqs in (MAX_NUM_SEQS, state.padded_num_tokens // (drafts + 1)):
            if rows <= max_num_seqs and capture_launch(state.num_tokens, max_num_seqs,
                                                       num_speculative_tokens=drafts) == state.padded_num_tokens:
                return max_num_seqs, drafts
    return None


@dataclass(frozen=True)
class _Rules:
    """The server rules a reduced state keeps when the failing state kept them (a pinned SPEC state may not: then
    neither need its reductions), and the server whose capture list padded the failing state's graph replay."""

    own_blocks: bool
    launch: bool
    server: tuple[int, int] | None  # (max_num_seqs, drafts)

    @classmethod
    def kept_by(cls, state: BatchState) -> _Rules:
        launch = _launch_plausible(state)
        replay = launch and state.launch_num_tokens is None and state.padded_num_tokens > state.num_tokens
        return cls(_writes_own_blocks(state), launch, _capture_config(state) if replay else None)

    def hold(self, state: BatchState) -> bool:
        return (not self.own_blocks or _writes_own_blocks(state)) and \
            (not self.launch or _launch_plausible(state, self.server))


# ---- building candidates ------------------------------------------------------------------------------------

def _requests(state: BatchState, trial: _Trial, src: np.ndarray, enc: np.ndarray, dec: np.ndarray,
              this: np.ndarray, tables: np.ndarray) -> BatchState:
    """The state with the requests of rows ``src`` and these lengths (each keeps the first ``this`` of its token
    rows): a replayed graph pads to the capture size of the new count on the failing state's server, other padding
    keeps its size; the runner's token count keeps its margin, the batch-id buffer its -1 rows."""
    old_this = state.seq_lens_this_time.astype(np.int64)
    n_old, n_new = state.num_tokens, int(this.astype(np.int64).sum())
    padded = n_new + state.padded_num_tokens - n_old
    server = trial.rules.server
    if server is not None and state.launch_num_tokens is None and state.padded_num_tokens > n_old:
        padded = capture_launch(n_new, server[0], num_speculative_tokens=server[1])
    changes: dict = {"seq_lens_encoder": enc.astype(np.int32), "seq_lens_decoder": dec.astype(np.int32),
                     "seq_lens_this_time": this.astype(np.int32), "block_tables": np.ascontiguousarray(tables),
                     "padded_num_tokens": padded}
    if state.launch_num_tokens is not None:
        changes["launch_num_tokens"] = n_new + state.launch_num_tokens - n_old
    if state.batch_ids_written is not None:
        rows = ranges((np.cumsum(old_this) - old_this)[src], this)
        old = state.batch_ids_written
        real = np.where(old[rows] == -1, -1, np.repeat(np.arange(src.shape[0]), this.astype(np.int64)))
        changes["batch_ids_written"] = np.concatenate([real, np.full(padded - n_new, -1)]).astype(np.int32)
    return dataclasses.replace(state, **changes)


def _subset(state: BatchState, trial: _Trial, keep: np.ndarray) -> BatchState:
    """Only the requests of rows ``keep``, in order."""
    return _requests(state, trial, keep, state.seq_lens_encoder[keep], state.seq_lens_decoder[keep],
                     state.seq_lens_this_time[keep], state.block_tables[keep])


def _emptied(state: BatchState, trial: _Trial, rows: np.ndarray) -> BatchState:
    """Rows ``rows`` made empty slots: nothing scheduled, nothing cached, the table row reset to -1."""
    enc, dec, this = (a.copy() for a in (state.seq_lens_encoder, state.seq_lens_decoder, state.seq_lens_this_time))
    tables = state.block_tables.copy()
    enc[rows] = dec[rows] = this[rows] = 0
    tables[rows] = -1
    return _requests(state, trial, np.arange(state.bsz), enc, dec, this, tables)


def _lengths(state: BatchState, trial: _Trial, b: int, *, enc: int | None = None, dec: int | None = None,
             this: int | None = None) -> BatchState:
    """Request ``b`` with other lengths (a prefill's ``enc`` is its ``this``)."""
    arrays = [a.copy() for a in (state.seq_lens_encoder, state.seq_lens_decoder, state.seq_lens_this_time)]
    for array, value in zip(arrays, (enc, dec, this)):
        if value is not None:
            array[b] = value
    return _requests(state, trial, np.arange(state.bsz), *arrays, state.block_tables)


def _smallest(lo: int, hi: int, fails_at: Callable[[int], bool]) -> int:
    """The least ``v`` in ``[lo, hi]`` that ``fails_at``, by bisection (``hi`` is known to fail)."""
    while lo < hi:
        mid = (lo + hi) // 2
        if fails_at(mid):
            hi = mid
        else:
            lo = mid + 1
    return hi


def _chunks(items: np.ndarray) -> Iterator[np.ndarray]:
    """Halves, quarters, ... of ``items`` (last chunk first), down to single items or ``MAX_CHUNKS`` chunks."""
    size = max(1, (items.shape[0] + 1) // 2)
    while True:
        for start in range(((items.shape[0] - 1) // size) * size, -1, -size):
            yield items[start:start + size]
        if size == 1 or -(-items.shape[0] // size) >= MAX_CHUNKS:
            return
        size = (size + 1) // 2


# ---- the passes: each returns a smaller failing state, or None ----------------------------------------------

def _drop_runner_fields(state: BatchState, trial: _Trial) -> BatchState | None:
    current = state
    for name in ("batch_ids_written", "prior_position_ids", "block_tables_past_bsz", "launch_num_tokens"):
        if getattr(current, name) is not None:
            candidate = dataclasses.replace(current, **{name: None})
            if trial(candidate):
                current = candidate
    return None if current is state else current


def _drop_padding(state: BatchState, trial: _Trial) -> BatchState | None:
    n, pad = state.num_tokens, state.padded_num_tokens - state.num_tokens

    def padded(extra: int) -> BatchState:
        changes: dict = {"padded_num_tokens": n + extra}
        if state.launch_num_tokens is not None:
            changes["launch_num_tokens"] = min(state.launch_num_tokens, n + extra)
        if state.batch_ids_written is not None:
            changes["batch_ids_written"] = state.batch_ids_written[: n + extra]
        return dataclasses.replace(state, **changes)

    current = state
    if pad > 0:
        least = _smallest(0, pad, lambda extra: extra == pad or trial(padded(extra)))
        current = padded(least) if least < pad else state
    floor = max(current.padded_num_tokens, 0 if current.prior_position_ids is None else
                current.prior_position_ids.shape[0])
    if current.max_num_batched_tokens > floor:
        candidate = dataclasses.replace(current, max_num_batched_tokens=floor)
        if trial(candidate):
            current = candidate
    return None if current is state else current


def _keep_leading(state: BatchState, trial: _Trial) -> BatchState | None:
    """The fewest leading requests that still fail (the trailing ones dropped)."""
    if state.bsz <= 1:
        return None
    keep = _smallest(1, state.bsz, lambda k: k == state.bsz or trial(_subset(state, trial, np.arange(k))))
    return _subset(state, trial, np.arange(keep)) if keep < state.bsz else None


def _drop_leading(state: BatchState, trial: _Trial) -> BatchState | None:
    """The most leading requests that can go (bisection from the front)."""
    if state.bsz <= 1:
        return None
    top = state.bsz - 1
    drop = top - _smallest(0, top, lambda k: k == top or trial(_subset(state, trial, np.arange(top - k, state.bsz))))
    return _subset(state, trial, np.arange(drop, state.bsz)) if drop > 0 else None


def _empty_slots(state: BatchState, trial: _Trial) -> BatchState | None:
    """Empty the slots of whole chunks of requests (indices stay: a bug in request 300 keeps its index)."""
    busy = np.flatnonzero((state.seq_lens_this_time > 0) | (state.seq_lens_decoder > 0)
                          | (state.block_tables >= 0).any(axis=1))
    current, emptied = state, np.zeros(state.bsz, dtype=bool)
    for chunk in _chunks(busy):
        if trial.spent:
            break
        if emptied[chunk].all():
            continue
        candidate = _emptied(current, trial, chunk)
        if trial(candidate):
            current, emptied[chunk] = candidate, True
    return None if current is state else current


def _drop_empty_slots(state: BatchState, trial: _Trial) -> BatchState | None:
    """Drop empty slots: all at once, else in chunks."""
    empty = np.flatnonzero((state.seq_lens_this_time == 0) & (state.seq_lens_decoder == 0)
                           & (state.block_tables < 0).all(axis=1))
    if empty.size == 0 or empty.size == state.bsz:
        return None
    current, gone = state, np.zeros(state.bsz, dtype=bool)
    for chunk in (empty, *(_chunks(empty) if empty.size > 1 else ())):
        if trial.spent or gone[chunk].any():
            continue
        keep = np.flatnonzero(~(gone | np.isin(np.arange(state.bsz), chunk)))
        candidate = _subset(state, trial, keep)
        if keep.size and trial(candidate):
            current, gone[chunk] = candidate, True
    return None if current is state else current


def _lower_lengths(state: BatchState, trial: _Trial) -> BatchState | None:
    """Each scheduled request with fewer tokens this step, then with less cached before it."""
    current = state
    for b in np.flatnonzero(state.seq_lens_this_time > 0).tolist():
        enc, dec, this = (int(a[b]) for a in (current.seq_lens_encoder, current.seq_lens_decoder,
                                              current.seq_lens_this_time))
        prefill = enc > 0
        least = _smallest(1, this, lambda t: t == this or trial(
            _lengths(current, trial, b, enc=t if prefill else None, this=t)))
        if least < this:
            current = _lengths(current, trial, b, enc=least if prefill else None, this=least)
        floor = 0 if prefill else 1  # a decoding request needs a cached prefix
        if dec > floor:
            least = _smallest(floor, dec, lambda d: d == dec or trial(_lengths(current, trial, b, dec=d)))
            if least < dec:
                current = _lengths(current, trial, b, dec=least)
    return None if current is state else current


def _trim_table(state: BatchState, trial: _Trial) -> BatchState | None:
    """Blocks past what each scheduled request writes reset to -1, then the table cut to the columns in use."""
    bs, current = state.block_size, state
    live = state.seq_lens_this_time > 0
    needed = np.where(live, -(-(state.seq_lens_decoder.astype(np.int64) + state.seq_lens_this_time) // bs), 0)
    spare = (np.arange(state.max_blocks)[None, :] >= needed[:, None]) & live[:, None] & (state.block_tables >= 0)
    if spare.any():
        tables = np.where(spare, -1, state.block_tables).astype(np.int32)
        candidate = dataclasses.replace(state, block_tables=tables)
        if trial(candidate):
            current = candidate
    used = (current.block_tables >= 0).any(axis=0)
    if current.block_tables_past_bsz is not None:
        used |= (current.block_tables_past_bsz >= 0).any(axis=0)
    width = max(1, int(np.flatnonzero(used).max()) + 1 if used.any() else 1)
    if width < current.max_blocks:
        past = current.block_tables_past_bsz
        candidate = dataclasses.replace(current, block_tables=np.ascontiguousarray(current.block_tables[:, :width]),
                                        block_tables_past_bsz=None if past is None else
                                        np.ascontiguousarray(past[:, :width]))
        if trial(candidate):
            current = candidate
    return None if current is state else current


def _renumber_blocks(state: BatchState, trial: _Trial) -> BatchState | None:
    """Block ids 0, 1, 2, ... in the order of the old ids (unless the bug needs the large ones)."""
    past = state.block_tables_past_bsz
    cells = state.block_tables if past is None else np.concatenate([state.block_tables, past])
    ids = np.unique(cells[cells >= 0])
    if ids.size == 0 or int(ids[-1]) == ids.size - 1:
        return None

    def renumbered(table: np.ndarray) -> np.ndarray:
        return np.where(table >= 0, np.searchsorted(ids, table), -1).astype(np.int32)

    candidate = dataclasses.replace(state, block_tables=renumbered(state.block_tables),
                                    block_tables_past_bsz=None if past is None else renumbered(past))
    return candidate if trial(candidate) else None


PASSES: tuple[Callable[[BatchState, _Trial], BatchState | None], ...] = (
    _drop_runner_fields, _drop_padding, _keep_leading, _drop_leading, _empty_slots, _drop_empty_slots,
    _lower_lengths, _trim_table, _renumber_blocks,
)
