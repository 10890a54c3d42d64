"""Bit-exact comparison of a candidate with a baseline, every element triaged against the oracle.

Each compared element (a position, or one consumer's slot in one layer) gets a verdict:
``OK`` (candidate right), ``FIX`` (baseline wrong, candidate right), ``REGRESSION`` (candidate wrong
where the baseline was right, or wrong differently), ``SHARED-BUG`` (both equal and both wrong).
Equality is bit-exact (dtype, shape, value); rightness is the oracle's, and for a padded token it is
the consumers' contract: any negative slot (two sides that both break it there share one bug, whatever
each writes). Findings that repeat across layers are folded into one.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from validation.oracle import Truth, truth
from validation.seam import CONSUMERS, Implementation, Observation, observe
from validation.state import BatchState

OK, FIX, REGRESSION, SHARED_BUG = "OK", "FIX", "REGRESSION", "SHARED-BUG"
VERDICTS = (REGRESSION, SHARED_BUG, FIX, OK)
SLOT_DTYPE = np.dtype(np.int64)
POSITION_DTYPES = (np.dtype(np.int32), np.dtype(np.int64))
MISSING = "missing"  # an element past the end of a too-short array: the consumer reads out of bounds


def classify(baseline_ok: bool, candidate_ok: bool, equal: bool) -> str:
    """The triage rule, in one place."""
    if candidate_ok:
        return OK if baseline_ok else FIX
    if baseline_ok or not equal:
        return REGRESSION
    return SHARED_BUG


@dataclass(frozen=True)
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
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


@dataclass
class Report:
    """The triage of one state: every finding, and how many elements got each verdict."""

    state: BatchState
    baseline: str
    candidate: str
    num_layers: int
    findings: list[Finding] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)

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
                if len(items) > max_lines_per_group:
                    lines.append(f"  ... and {len(items) - max_lines_per_group} more {verdict} findings on {consumer}")
        return "\n".join(lines)

    def to_dict(self, max_findings: int = 2000) -> dict[str, Any]:
        return {
            "state": self.state.to_dict(),
            "baseline": self.baseline,
            "candidate": self.candidate,
            "num_layers": self.num_layers,
            "counts": {v: self.counts[v] for v in VERDICTS},
            "findings": [f.to_dict() for f in self.findings[:max_findings]],
            "findings_total": len(self.findings),
        }


def compare_state(state: BatchState, baseline: Implementation, candidate: Implementation, num_layers: int,
                  history: Sequence[BatchState] = ()) -> Report:
    """Run both sides on ``state`` (fresh instances, first fed the ``history`` steps so persistent
    buffers hold what they held in a multi-step run) and triage the last step against the oracle."""
    base_fn, cand_fn = baseline.new(), candidate.new()
    for earlier in history:
        observe(base_fn, earlier.step_inputs(), num_layers)
        observe(cand_fn, earlier.step_inputs(), num_layers)
    base = observe(base_fn, state.step_inputs(), num_layers)
    cand = observe(cand_fn, state.step_inputs(), num_layers)
    return triage(state, base, cand, baseline.name, candidate.name, num_layers)


def triage(state: BatchState, base: Observation, cand: Observation, baseline_name: str, candidate_name: str,
           num_layers: int, expected: Truth | None = None) -> Report:
    """Triage two observations of ``state``; ``expected`` defaults to the oracle's truth."""
    report = Report(state, baseline_name, candidate_name, num_layers)
    expected = expected or truth(state)
    _triage_failures(report, base, cand)
    _triage_hazards(report, base, cand)
    if cand.error is None:
        _triage_positions(report, expected, base, cand)
        _triage_slots(report, expected, base, cand)
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


def _triage_positions(report: Report, expected: Truth, base: Observation, cand: Observation) -> None:
    n = expected.num_tokens
    truth_pos = np.asarray(expected.positions, dtype=np.int64).reshape(n)
    _triage_dtype(report, "position_ids", base.position_ids, cand.position_ids, POSITION_DTYPES)
    b_val, b_has = _values(base.position_ids, n)
    c_val, c_has = _values(cand.position_ids, n)
    b_ok, c_ok = b_has & (b_val == truth_pos), c_has & (c_val == truth_pos)
    _collect(report, "position_ids", None, expected, truth_pos, np.zeros(n, bool), b_val, b_has, b_ok, c_val, c_has, c_ok)


def _triage_slots(report: Report, expected: Truth, base: Observation, cand: Observation) -> None:
    m = len(expected.tokens)
    truth_slot = np.asarray(expected.slots, dtype=np.int64).reshape(m)
    padding = np.arange(m) >= expected.num_tokens
    for layer in range(report.num_layers):
        for consumer in CONSUMERS:
            b_arr = base.layers[layer][consumer] if layer < len(base.layers) else None
            c_arr = cand.layers[layer][consumer] if layer < len(cand.layers) else None
            if layer == 0:
                _triage_dtype(report, consumer, b_arr, c_arr, (SLOT_DTYPE,))
            b_val, b_has = _values(b_arr, m)
            c_val, c_has = _values(c_arr, m)
            b_ok = b_has & np.where(padding, b_val < 0, b_val == truth_slot)
            c_ok = c_has & np.where(padding, c_val < 0, c_val == truth_slot)
            _collect(report, consumer, layer, expected, truth_slot, padding, b_val, b_has, b_ok, c_val, c_has, c_ok)
    _fold_layers(report)


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


def _values(arr: np.ndarray | None, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Element values as int64 over ``length`` rows, and which rows the array actually has."""
    out = np.zeros(length, dtype=np.int64)
    has = np.zeros(length, dtype=bool)
    if arr is not None and arr.ndim == 1 and np.issubdtype(arr.dtype, np.integer):
        k = min(length, arr.shape[0])
        out[:k] = arr[:k].astype(np.int64)
        has[:k] = True
    return out, has


def _collect(report: Report, consumer: str, layer: int | None, expected: Truth, truth_vals: np.ndarray,
             padding: np.ndarray, b_val: np.ndarray, b_has: np.ndarray, b_ok: np.ndarray,
             c_val: np.ndarray, c_has: np.ndarray, c_ok: np.ndarray) -> None:
    # On a padding row any negative slot is right, so the garbage two wrong sides write there is
    # incidental: both breaking the contract is one shared bug, not "wrong differently".
    equal = ((b_has == c_has) & (~b_has | (b_val == c_val))) | (padding & b_has & c_has)
    verdict = np.where(c_ok, np.where(b_ok, 0, 1), np.where(b_ok | ~equal, 2, 3))  # OK FIX REGRESSION SHARED
    names = (OK, FIX, REGRESSION, SHARED_BUG)
    for code, name in enumerate(names):
        report.counts[name] += int((verdict == code).sum())
    for token in np.flatnonzero(verdict != 0):
        t = expected.tokens[token]
        report.findings.append(Finding(
            names[verdict[token]], consumer,
            baseline=int(b_val[token]) if b_has[token] else MISSING,
            candidate=int(c_val[token]) if c_has[token] else MISSING,
            oracle="<0" if padding[token] else int(truth_vals[token]),
            token=int(token), request=t.request, position=t.position, logical_block=t.logical_block,
            layers=() if layer is None else (layer,),
            note=_explain(int(truth_vals[token]), bool(padding[token]), b_ok[token], c_ok[token],
                          int(c_val[token]), bool(c_has[token]), consumer),
            baseline_right=bool(b_ok[token]),
        ))


def _explain(truth_val: int, padding: bool, b_ok: bool, c_ok: bool, c_val: int, c_has: bool, consumer: str) -> str:
    """A short cause where one can be named without recomputing the formula."""
    if not c_has:
        return "candidate array too short: the consumer reads past it"
    if padding and not c_ok:
        return "a padded token must map to a negative slot, or it overwrites a live cache entry"
    if not padding and consumer != "position_ids" and not c_ok and c_val == _wrap_int32(truth_val) and c_val != truth_val:
        return "int32 overflow of block_id * block_size"
    if not padding and not c_ok and c_val < 0 <= truth_val:
        return "a negative slot for a real token: its KV is silently dropped"
    return ""


def _wrap_int32(x: int) -> int:
    return (x + 2**31) % 2**32 - 2**31


def _fold_layers(report: Report) -> None:
    """Merge slot findings that differ only in their layer into one finding listing the layers."""
    folded: dict[tuple, Finding] = {}
    kept: list[Finding] = []
    for f in report.findings:
        if f.consumer not in CONSUMERS:
            kept.append(f)
            continue
        key = (f.verdict, f.consumer, f.token, f.baseline, f.candidate)
        if key in folded:
            prev = folded[key]
            folded[key] = Finding(**{**prev.__dict__, "layers": prev.layers + f.layers})
        else:
            folded[key] = f
            kept.append(f)
    report.findings = [folded.get((f.verdict, f.consumer, f.token, f.baseline, f.candidate), f)
                       if f.consumer in CONSUMERS else f for f in kept]


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
