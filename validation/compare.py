"""Bit-exact comparison of a candidate with a baseline, every element triaged against the oracle.

Each compared element (a position, or one consumer's slot in one layer) gets a verdict:
``OK`` (candidate right), ``FIX`` (baseline wrong, candidate right), ``REGRESSION`` (candidate wrong
where the baseline was right, or wrong differently), ``SHARED-BUG`` (both equal and both wrong).
Equality is bit-exact (dtype, shape, value); rightness is the oracle's, and for a padded token it is
the consumers' contract: any negative slot (two sides that both break it there share one bug, whatever
each writes). Findings that repeat across layers are folded into one.

When the baseline faults and the candidate runs, the elements are triaged against the baseline's
surviving path rebuilt from the SPEC (``validation.causes``): a candidate difference that follows
from the shared position op or the int32 product is a SHARED-BUG with its cause named, and only a
difference the candidate introduced is a REGRESSION, at any block size.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from validation import causes
from validation.options import PAD_CONTRACTS
from validation.oracle import Truth, truth
from validation.seam import CONSUMERS, Implementation, Observation, observe
from validation.state import BatchState
from validation.verdicts import Verdict

OK, FIX, REGRESSION, SHARED_BUG = Verdict.OK, Verdict.FIX, Verdict.REGRESSION, Verdict.SHARED_BUG
VERDICTS = Verdict.worst_first()
SLOT_DTYPE = np.dtype(np.int64)
POSITION_DTYPES = (np.dtype(np.int32), np.dtype(np.int64))
MISSING = "missing"  # an element past the end of a too-short array: the consumer reads out of bounds
CACHE_NAMES = {"attention": "MLA latent cache", "indexer": "indexer K cache"}  # what each consumer's slot writes


def classify(baseline_ok: bool, candidate_ok: bool, equal: bool) -> str:
    """The triage rule, in one place."""
    if candidate_ok:
        return OK if baseline_ok else FIX
    if baseline_ok or not equal:
        return REGRESSION
    return SHARED_BUG


@dataclass(slots=True)
class Finding:
    """One non-OK verdict on one element (folded over the layers where it repeats)."""

    verdict: str
    consumer: str  # position_ids, indexer, attention, dtype, launch, memory
    baseline: Any
    candidate: Any
    oracle: Any
    token: int | None = None
    request: int | None = None
    position: int | None = None
    logical_block: int | None = None
    layers: tuple[int, ...] = ()
    note: str = ""
    baseline_right: bool = False

    def line(self, num_layers: int) -> str:
        """One line: verdict, consumer, layers, token and its request/position/block, each side, the truth."""
        where = self.consumer
        if self.layers:
            where += " all layers" if len(self.layers) == num_layers and num_layers > 1 else f" layer {_ranges(self.layers)}"
        if self.token is not None:
            if self.request is None:
                where += f" token {self.token} (padding)"
            else:
                where += (f" token {self.token} (request {self.request}, position {self.position}, "
                          f"logical block {self.logical_block})")
        sides = f"baseline={self.baseline} candidate={self.candidate} oracle={self.oracle}"
        right = {
            FIX: "candidate matches the oracle",
            REGRESSION: "baseline matches the oracle" if self.baseline_right else "neither matches the oracle, and they differ",
            SHARED_BUG: "neither matches the oracle",
        }[self.verdict]
        note = f"; {self.note}" if self.note else ""
        return f"{self.verdict:<10} {where}: {sides} [{right}{note}]"

    def to_dict(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in values.items()}


@dataclass
class Report:
    """The triage of one state: every finding, and how many elements got each verdict."""

    state: BatchState
    baseline: str
    candidate: str
    num_layers: int
    findings: list[Finding] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    # (verdict, consumer) -> findings not materialised past ``max_per_group`` (fuzzing needs counts, not lines)
    elided: Counter = field(default_factory=Counter)
    max_per_group: int | None = None
    pad_contract: str = PAD_CONTRACTS[0]

    @property
    def verdicts(self) -> set[str]:
        return {f.verdict for f in self.findings}

    def exit_code(self, strict: bool = False) -> int:
        if REGRESSION in self.verdicts:
            return 1
        return 1 if strict and self.findings else 0

    def summary(self) -> str:
        counts = ", ".join(f"{self.counts[v]} {v}" for v in VERDICTS)
        label = f" on {self.state.name}" if self.state.name else ""
        return (f"{self.baseline} vs {self.candidate}{label}: {counts} "
                f"({self.state.num_tokens} tokens, {self.state.padded_num_tokens} launched, {self.num_layers} layers, "
                f"block size {self.state.block_size})")

    def render(self, max_lines_per_group: int = 8) -> str:
        """Human report: summary, then findings grouped by verdict and consumer, long groups elided."""
        lines = [self.summary()]
        groups: dict[tuple[str, str], list[Finding]] = defaultdict(list)
        for f in self.findings:
            groups[(f.verdict, f.consumer)].append(f)
        for verdict in VERDICTS:
            for (v, consumer), items in sorted(groups.items()):
                if v != verdict:
                    continue
                lines.extend("  " + f.line(self.num_layers) for f in items[:max_lines_per_group])
                more = len(items) - min(len(items), max_lines_per_group) + self.elided[(verdict, consumer)]
                if more:
                    lines.append(f"  ... and {more} more {verdict} findings on {consumer}")
        return "\n".join(lines)

    def to_dict(self, max_findings: int = 2000) -> dict[str, Any]:
        return {
            "state": self.state.to_dict(),
            "baseline": self.baseline,
            "candidate": self.candidate,
            "num_layers": self.num_layers,
            "counts": {v: self.counts[v] for v in VERDICTS},
            "findings": [f.to_dict() for f in self.findings[:max_findings]],
            "findings_total": len(self.findings) + sum(self.elided.values()),
        }


def compare_state(state: BatchState, baseline: Implementation, candidate: Implementation, num_layers: int,
                  history: Sequence[BatchState] = (), pad_contract: str = PAD_CONTRACTS[0]) -> Report:
    """Run both sides on ``state`` (fresh instances, first fed the ``history`` steps so persistent
    buffers hold what they held in a multi-step run) and triage the last step against the oracle."""
    base_fn, cand_fn = baseline.new(), candidate.new()
    for earlier in history:
        observe(base_fn, earlier.step_inputs(), num_layers)
        observe(cand_fn, earlier.step_inputs(), num_layers)
    base = observe(base_fn, state.step_inputs(), num_layers)
    cand = observe(cand_fn, state.step_inputs(), num_layers)
    return triage(state, base, cand, baseline.name, candidate.name, num_layers, pad_contract=pad_contract)


def triage(state: BatchState, base: Observation, cand: Observation, baseline_name: str, candidate_name: str,
           num_layers: int, expected: Truth | None = None, max_per_group: int | None = None,
           pad_contract: str = PAD_CONTRACTS[0]) -> Report:
    """Triage two observations of ``state``; ``expected`` defaults to the oracle's truth. With
    ``max_per_group``, at most that many findings per (verdict, consumer) are built; the rest are
    counted in ``Report.elided`` (every element is still counted in ``Report.counts``).
    ``pad_contract`` says what a padded row's slot must be (``validation.options.PAD_CONTRACTS``): any
    negative value (FastDeploy's writers), or exactly -1 (vLLM's)."""
    if pad_contract not in PAD_CONTRACTS:
        raise ValueError(f"unknown pad contract {pad_contract!r} (choose from: {', '.join(PAD_CONTRACTS)})")
    report = Report(state, baseline_name, candidate_name, num_layers, max_per_group=max_per_group)
    report.pad_contract = pad_contract
    expected = expected or truth(state)
    _triage_failures(report, base, cand)
    # A faulted baseline returned nothing: compare the elements with what its surviving path computes,
    # so a wrong element that follows from a cause both sides share is not called the candidate's.
    stand_in = base.error is not None and cand.error is None
    elements = causes.stand_in(state, cand, num_layers) if stand_in else base
    first = len(report.findings)
    _triage_hazards(report, elements, cand)
    if cand.error is None:
        shared_position = _triage_positions(report, expected, elements, cand)
        _triage_slots(report, expected, elements, cand, shared_position)
    if stand_in:
        for f in report.findings[first:]:
            f.note = f"{f.note}; {causes.NOTE}" if f.note else causes.NOTE
    if base.error is not None:
        # The launch finding already says the baseline failed; per-element FIXes would only repeat it.
        report.findings = [f for f in report.findings if f.verdict != FIX or f.consumer == "launch"]
    return report


def _triage_failures(report: Report, base: Observation, cand: Observation) -> None:
    if base.error is None and cand.error is None:
        return
    # Two failures are the same bug when they are the same kind of failure (the op names may differ).
    same = (base.error or "").split(":")[0] == (cand.error or "").split(":")[0]
    verdict = classify(base.error is None, cand.error is None, same)
    if verdict == OK:
        return
    report.counts[verdict] += 1
    report.findings.append(Finding(verdict, "launch", base.error or "ran", cand.error or "ran", "runs",
                                   baseline_right=base.error is None))


def _triage_hazards(report: Report, base: Observation, cand: Observation) -> None:
    for hazard in sorted(set(base.hazards) | set(cand.hazards)):
        verdict = classify(hazard not in base.hazards, hazard not in cand.hazards, True)
        report.counts[verdict] += 1
        report.findings.append(Finding(
            verdict, "memory", hazard if hazard in base.hazards else "none",
            hazard if hazard in cand.hazards else "none", "no out-of-bounds write",
            baseline_right=hazard not in base.hazards))


def _triage_positions(report: Report, expected: Truth, base: Observation, cand: Observation) -> np.ndarray:
    """Triage the positions; return which real tokens both sides place at the same wrong position."""
    n = expected.num_tokens
    truth_pos = np.asarray(expected.positions, dtype=np.int64).reshape(1, n)
    _triage_dtype(report, "position_ids", base.position_ids, cand.position_ids, POSITION_DTYPES)
    b_val, b_has = _values([base.position_ids], n)
    c_val, c_has = _values([cand.position_ids], n)
    b_ok, c_ok = b_has & (b_val == truth_pos), c_has & (c_val == truth_pos)
    codes = _codes(np.zeros(n, bool), b_val, b_has, b_ok, c_val, c_has, c_ok)
    _emit(report, "position_ids", expected, truth_pos[0], np.zeros(n, bool), codes, b_val, b_has, b_ok, c_val, c_has,
          c_ok, per_layer=False)
    return (codes[0] == 3)


def _triage_slots(report: Report, expected: Truth, base: Observation, cand: Observation, shared_position: np.ndarray) -> None:
    m, n, layers = len(expected.tokens), expected.num_tokens, report.num_layers
    truth_slot = np.asarray(expected.slots, dtype=np.int64).reshape(m)
    padding = np.arange(m) >= n
    # A real token both sides put at the same wrong position: their slots differ only downstream of
    # that shared bug (e.g. one side also uses another block size), so it is not a new regression.
    follows = np.zeros(m, bool)
    follows[:n] = shared_position
    values = {c: _values([base.layers[i][c] if i < len(base.layers) else None for i in range(layers)], m)
              for c in CONSUMERS}
    for consumer in CONSUMERS:
        other = CONSUMERS[1 - CONSUMERS.index(consumer)]
        b_arrs = [base.layers[i][consumer] if i < len(base.layers) else None for i in range(layers)]
        c_arrs = [cand.layers[i][consumer] if i < len(cand.layers) else None for i in range(layers)]
        _triage_dtype(report, consumer, b_arrs[0], c_arrs[0], (SLOT_DTYPE,))
        b_val, b_has = values[consumer]
        c_val, c_has = _values(c_arrs, m)
        pad_ok = (lambda v: v < 0) if report.pad_contract == "negative" else (lambda v: v == -1)
        b_ok = b_has & np.where(padding, pad_ok(b_val), b_val == truth_slot)
        c_ok = c_has & np.where(padding, pad_ok(c_val), c_val == truth_slot)
        codes = _codes(padding, b_val, b_has, b_ok, c_val, c_has, c_ok)
        # The refactor makes both consumers read one tensor: a wrong slot the baseline's other consumer
        # also computes for this token is the baseline's own bug, carried over, not a new one.
        o_val, o_has = values[other]
        carried = o_has & c_has & (o_val == c_val) & ~padding
        # On a token whose position both sides got equally wrong, a baseline slot that is right is right
        # by coincidence (wrong position, wrong block size): the candidate's slot follows the shared bug.
        codes[(codes == 2) & (follows | (carried & ~b_ok))] = 3
        _emit(report, consumer, expected, truth_slot, padding, codes, b_val, b_has, b_ok, c_val, c_has, c_ok,
              per_layer=True)


def _triage_dtype(report: Report, consumer: str, b_arr: np.ndarray | None, c_arr: np.ndarray | None,
                  allowed: tuple[np.dtype, ...]) -> None:
    if b_arr is None and c_arr is None:
        return
    b_dt = None if b_arr is None else b_arr.dtype
    c_dt = None if c_arr is None else c_arr.dtype
    verdict = classify(b_dt in allowed, c_dt in allowed, b_dt == c_dt)
    report.counts[verdict] += 1
    if verdict != OK:
        want = " or ".join(str(d) for d in allowed)
        report.findings.append(Finding(verdict, "dtype", f"{consumer} {b_dt}", f"{consumer} {c_dt}", want,
                                       baseline_right=b_dt in allowed))


def _values(arrs: list[np.ndarray | None], length: int) -> tuple[np.ndarray, np.ndarray]:
    """Element values as int64, one row per array over ``length`` columns, and which cells each array has."""
    out = np.zeros((len(arrs), length), dtype=np.int64)
    has = np.zeros((len(arrs), length), dtype=bool)
    for row, arr in enumerate(arrs):
        if arr is not None and arr.ndim == 1 and np.issubdtype(arr.dtype, np.integer):
            k = min(length, arr.shape[0])
            out[row, :k] = arr[:k]
            has[row, :k] = True
    return out, has


CODE_NAMES = (OK, FIX, REGRESSION, SHARED_BUG)


def _codes(padding: np.ndarray, b_val: np.ndarray, b_has: np.ndarray, b_ok: np.ndarray,
           c_val: np.ndarray, c_has: np.ndarray, c_ok: np.ndarray) -> np.ndarray:
    """``classify`` over whole arrays: 0 OK, 1 FIX, 2 REGRESSION, 3 SHARED-BUG."""
    # On a padding row any negative slot is right, so the garbage two wrong sides write there is
    # incidental: both breaking the contract is one shared bug, not "wrong differently".
    equal = ((b_has == c_has) & (~b_has | (b_val == c_val))) | (padding & b_has & c_has)
    return np.where(c_ok, np.where(b_ok, 0, 1), np.where(b_ok | ~equal, 2, 3))


def _emit(report: Report, consumer: str, expected: Truth, truth_vals: np.ndarray, padding: np.ndarray,
          codes: np.ndarray, b_val: np.ndarray, b_has: np.ndarray, b_ok: np.ndarray, c_val: np.ndarray,
          c_has: np.ndarray, c_ok: np.ndarray, *, per_layer: bool) -> None:
    """Count every element's verdict; one finding per non-OK token, folded over the layers that agree."""
    for code, name in enumerate(CODE_NAMES):
        report.counts[name] += int((codes == code).sum())
    layers = codes.shape[0]
    same = ((codes == codes[0]).all(0) & (b_val == b_val[0]).all(0) & (c_val == c_val[0]).all(0)
            & (b_has == b_has[0]).all(0) & (c_has == c_has[0]).all(0))
    for i, token in _findings_to_build(report, consumer, codes, same):
        t = expected.tokens[token]
        verdict = CODE_NAMES[codes[i, token]]
        shown = tuple(range(layers)) if same[token] else (i,)
        report.findings.append(Finding(
            verdict, consumer,
            baseline=int(b_val[i, token]) if b_has[i, token] else MISSING,
            candidate=int(c_val[i, token]) if c_has[i, token] else MISSING,
            oracle="<0" if padding[token] else int(truth_vals[token]),
            token=int(token), request=t.request, position=t.position, logical_block=t.logical_block,
            layers=shown if per_layer else (),
            note=_explain(int(truth_vals[token]), bool(padding[token]), bool(c_ok[i, token]), int(c_val[i, token]),
                          bool(c_has[i, token]), consumer, verdict, bool(b_ok[i, token]), report),
            baseline_right=bool(b_ok[i, token]),
        ))


def _findings_to_build(report: Report, consumer: str, codes: np.ndarray, same: np.ndarray) -> list[tuple[int, int]]:
    """The (layer, token) cells that get a finding, in token order: one per wrong token whose layers all agree
    (its layer 0), else one per wrong layer; past ``max_per_group`` of a verdict, the rest are only counted in
    ``report.elided``. Why in numpy: a state whose padded tail is wrong has thousands of wrong cells, and a
    Python step per elided cell was most of its triage."""
    wrong = np.flatnonzero((codes != 0).any(0))
    cells = codes[:, wrong] != 0
    cells[1:, same[wrong]] = False  # agreeing layers: one finding, shown as all layers
    token_at, layer = np.nonzero(cells.T)  # token-major, then layer: the order findings are listed in
    token = wrong[token_at]
    verdict = codes[layer, token]
    keep = np.ones(token.shape[0], dtype=bool)
    cap = report.max_per_group
    if cap is not None:
        for code in np.unique(verdict):
            of_code = np.flatnonzero(verdict == code)
            if of_code.shape[0] > cap:
                keep[of_code[cap:]] = False
                report.elided[(CODE_NAMES[code], consumer)] += int(of_code.shape[0] - cap)
    return list(zip(layer[keep].tolist(), token[keep].tolist()))


def _explain(truth_val: int, padding: bool, c_ok: bool, c_val: int, c_has: bool, consumer: str, verdict: str,
             b_ok: bool, report: Report) -> str:
    """A short cause where one can be named without recomputing the formula."""
    if not c_has:
        return "candidate array too short: the consumer reads past it"
    if padding and not c_ok and c_val < 0:
        return f"a padded token must map to -1 (--pad-contract {report.pad_contract}); {c_val} breaks the peer contract"
    if padding and not c_ok:
        return f"a padded token must map to a negative slot; {owner(report.state, c_val, consumer)}"
    if not padding and consumer != "position_ids" and not c_ok and c_val == _wrap_int32(truth_val) and c_val != truth_val:
        return "int32 overflow of block_id * block_size"
    if not padding and not c_ok and c_val < 0 <= truth_val:
        return "a negative slot for a real token: its KV is silently dropped"
    if verdict == SHARED_BUG and consumer == "position_ids":
        return "the shared position op"
    if verdict == SHARED_BUG and consumer in CONSUMERS and not b_ok:
        return "a bug the baseline has too (a shared wrong position, or its other consumer's slot)"
    if verdict == SHARED_BUG and consumer in CONSUMERS:
        return "follows from the position both sides got wrong (the baseline's slot is right by coincidence)"
    return ""


def owner(state: BatchState, slot: int, consumer: str) -> str:
    """What a padded row's write at ``slot`` overwrites: a live entry (a position a running request has
    cached, or writes this step) names the request and position; otherwise the block is free or the
    position past the request's context. In the consumer's cache (MLA latent or indexer K)."""
    cache = CACHE_NAMES.get(consumer, consumer)
    bs = state.block_size
    hits = np.argwhere(state.block_tables.astype(np.int64) == slot // bs)
    context = state.seq_lens_decoder.astype(np.int64) + state.seq_lens_this_time.astype(np.int64)
    for request, column in hits:
        position = int(column) * bs + slot % bs
        if position < context[request] and context[request] > 0:
            return (f"it overwrites a live entry of running request {int(request)}, position {position} "
                    f"(slot {slot}, block {slot // bs}), in the {cache}")
    held = f"held by request {int(hits[0][0])} past its context" if len(hits) else "in no request's block table"
    return f"it writes slot {slot} (block {slot // bs}, {held}) in the {cache}: not live now, but no row may write it"


def _wrap_int32(x: int) -> int:
    return (x + 2**31) % 2**32 - 2**31


def _ranges(layers: tuple[int, ...]) -> str:
    """``(0, 1, 2, 5)`` -> ``0-2,5``."""
    out, start, prev = [], None, None
    for x in sorted(layers):
        if start is None:
            start = prev = x
        elif x == prev + 1:
            prev = x
        else:
            out.append(f"{start}-{prev}" if start != prev else str(start))
            start = prev = x
    if start is not None:
        out.append(f"{start}-{prev}" if start != prev else str(start))
    return ",".join(out)
