"""The property bodies, as plain functions from a case to a triage ``Report``.

Why plain functions: the same checks run under ``@given`` (single steps), inside the multi-step
state machine and in the regression replay, and each must classify what it sees with the core
triage (baseline = the configured baseline, truth = the oracle) rather than just pass or fail.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from properties.config import FuzzConfig
from properties.strategies import Case
from validation import compare
from validation.compare import OK, REGRESSION, SHARED_BUG, Finding, Report
from validation.causes import stand_in
from validation.oracle import truth, truth_arrays
from validation.seam import CONSUMERS, Observation, StepFn, observe

Check = Callable[[Case, FuzzConfig], Report]
# Findings built per (verdict, consumer) and example: the rest are only counted. Building one per
# wrong token was most of a chunked state's cost, and a fuzz summary needs counts and one example.
FINDINGS_PER_GROUP = 16


def run_case(fn: StepFn, case: Case, layers: int) -> Observation:
    """Run the case's history, then its state, through one instance (persistent buffers and all)."""
    for earlier in case.history:
        observe(fn, earlier.step_inputs(), layers)
    return observe(fn, case.state.step_inputs(), layers)


def equivalence(case: Case, cfg: FuzzConfig) -> Report:
    """Candidate vs baseline, bit-exact on every layer and consumer, each element triaged by the oracle
    (at once, when both sides equal the oracle everywhere: nothing to triage)."""
    base = run_case(cfg.baseline_impl.new(), case, cfg.layers)
    cand = run_case(cfg.candidate_impl.new(), case, cfg.layers)
    expected = truth_arrays(case.state)
    if expected is not None and _matches(cand, expected, cfg.layers, cfg.pad_contract) and \
            _matches(base, expected, cfg.layers, cfg.pad_contract):
        return _all_right(case, cfg, expected)
    return compare.triage(case.state, base, cand, cfg.baseline, cfg.candidate, cfg.layers,
                          max_per_group=FINDINGS_PER_GROUP, pad_contract=cfg.pad_contract)


def truth_check(case: Case, cfg: FuzzConfig) -> Report:
    """Candidate vs the oracle; the baseline runs only where the candidate is wrong, to triage it."""
    expected = truth_arrays(case.state)
    cand = run_case(cfg.candidate_impl.new(), case, cfg.layers)
    if expected is not None and _matches(cand, expected, cfg.layers, cfg.pad_contract):
        return _all_right(case, cfg, expected)
    base = run_case(cfg.baseline_impl.new(), case, cfg.layers)
    return compare.triage(case.state, base, cand, cfg.baseline, cfg.candidate, cfg.layers,
                          max_per_group=FINDINGS_PER_GROUP, pad_contract=cfg.pad_contract)


def _all_right(case: Case, cfg: FuzzConfig, expected: tuple[np.ndarray, np.ndarray]) -> Report:
    """The report of a state every side got right: every element OK."""
    report = Report(case.state, cfg.baseline, cfg.candidate, cfg.layers)
    report.counts[OK] += len(expected[1]) * (1 + 2 * cfg.layers)
    return report


def _matches(obs: Observation, expected: tuple[np.ndarray, np.ndarray], layers: int, pad_contract: str) -> bool:
    """Whether an observation is right everywhere (dtype, length, value; padding negative, or -1 under the
    minus-one contract), in numpy."""
    if obs.error is not None or obs.hazards or len(obs.layers) != layers:
        return False
    want_pos, want = expected
    n = want_pos.shape[0]
    pos = obs.position_ids
    if pos.dtype not in compare.POSITION_DTYPES or pos.shape != (n,) or not np.array_equal(pos, want_pos):
        return False
    for layer in obs.layers:
        for consumer in CONSUMERS:
            got = layer[consumer]
            if got.dtype != compare.SLOT_DTYPE or got.shape != want.shape:
                return False
            pad_wrong = (got[n:] >= 0) if pad_contract == "negative" else (got[n:] != -1)
            if not np.array_equal(got[:n], want[:n]) or bool(pad_wrong.any()):
                return False
    return True


def invariants(case: Case, cfg: FuzzConfig) -> Report:
    """Structural rules on the candidate's own output, independent of the oracle's formula; a broken
    rule is a REGRESSION unless the baseline breaks the same rule in the same state (SHARED-BUG)."""
    report = Report(case.state, cfg.baseline, cfg.candidate, cfg.layers)
    cand_obs = run_case(cfg.candidate_impl.new(), case, cfg.layers)
    cand = violations(case, cand_obs)
    if not cand:
        report.counts[OK] += 1
        return report
    base_obs = run_case(cfg.baseline_impl.new(), case, cfg.layers)
    if base_obs.error is not None and cand_obs.error is None:
        # A faulted baseline: its surviving path stands in (as in the triage); its padded rows keep
        # the contract, so a padding violation stays the candidate's.
        base_obs = stand_in(case.state, cand_obs, cfg.layers, padding=-1)
    base = violations(case, base_obs)
    # Keys name only the first offending row; the baseline breaking the same rule anywhere in this
    # state is the same bug (the element-wise properties judge the rows themselves).
    base_rules = {rule for rule, _, _ in base}
    for key, detail in cand.items():
        verdict = SHARED_BUG if key[0] in base_rules else REGRESSION
        rule, consumer, token = key
        report.counts[verdict] += 1
        report.findings.append(Finding(verdict, f"invariant {rule}", base.get(key, "holds"), detail, RULES[rule],
                                       token=token, note=consumer, baseline_right=key not in base))
    return report


def determinism(case: Case, cfg: FuzzConfig) -> Report:
    """The same state twice (a fresh instance each time, and the same instance again) gives identical bytes."""
    report = Report(case.state, cfg.baseline, cfg.candidate, cfg.layers)
    cand = _repeatable(cfg.candidate_impl.new, case, cfg.layers)
    if cand is None:
        report.counts[OK] += 1
        return report
    base = _repeatable(cfg.baseline_impl.new, case, cfg.layers)
    verdict = REGRESSION if base is None else SHARED_BUG
    report.counts[verdict] += 1
    report.findings.append(Finding(verdict, "determinism", base or "identical", cand, "identical bytes",
                                   baseline_right=base is None))
    return report


CHECKS: dict[str, Check] = {
    "equivalence": equivalence,
    "truth": truth_check,
    "invariants": invariants,
    "determinism": determinism,
}

RULES = {
    "dtype": "slot_mapping is int64, position_ids int32 or int64",
    "shape": "one slot per launched token row, one position per real token",
    "own_block": "a real token's slot lies in a block its request holds",
    "block_offset": "slot % block_size == position % block_size",
    "unique": "no two real tokens on one slot",
    "padding": "a padded token's slot is negative",
    "runs": "the implementation runs",
}


def violations(case: Case, obs: Observation) -> dict[tuple[str, str, int | None], str]:
    """Every broken rule as ``{(rule, consumer, first token): what was seen}`` (first offender per rule)."""
    state = case.state
    n, padded, bs = state.num_tokens, state.padded_num_tokens, state.block_size
    if obs.error is not None:
        return {("runs", "launch", None): obs.error}
    found: dict[tuple[str, str, int | None], str] = {}
    pos = obs.position_ids
    if pos.dtype not in compare.POSITION_DTYPES:
        found[("dtype", "position_ids", None)] = str(pos.dtype)
    if pos.shape != (n,):
        found[("shape", "position_ids", None)] = f"{list(pos.shape)} for {n} tokens"
        pos = np.asarray(truth(state).positions, dtype=np.int64)
    rows = np.repeat(np.arange(state.bsz), state.seq_lens_this_time.astype(np.int64))
    seen: set[bytes] = set()
    for layer in obs.layers:
        for consumer in CONSUMERS:
            slots = layer[consumer]
            key = slots.dtype.str.encode() + slots.tobytes()
            if key in seen:
                continue
            seen.add(key)
            found.update(_slot_violations(state, consumer, slots, pos.astype(np.int64), rows, n, padded, bs))
    return found


def _slot_violations(state: Any, consumer: str, slots: np.ndarray, pos: np.ndarray, rows: np.ndarray, n: int,
                     padded: int, bs: int) -> dict[tuple[str, str, int | None], str]:
    found: dict[tuple[str, str, int | None], str] = {}
    if slots.dtype != compare.SLOT_DTYPE:
        found[("dtype", consumer, None)] = str(slots.dtype)
    if slots.ndim != 1 or slots.shape[0] < padded:
        found[("shape", consumer, None)] = f"{list(slots.shape)} for a launch of {padded} rows"
        return found
    real = slots[:n].astype(np.int64)
    blocks = np.floor_divide(real, bs)
    owned = (state.block_tables[rows] == blocks[:, None]).any(axis=1) & (real >= 0)
    _first(found, "own_block", consumer, ~owned, real)
    _first(found, "block_offset", consumer, (real % bs) != (pos % bs), real)
    _, first_idx, counts = np.unique(real, return_index=True, return_counts=True)
    dup = np.zeros(n, dtype=bool)
    dup[first_idx[counts > 1]] = True
    _first(found, "unique", consumer, dup, real)
    tail = slots[n:padded].astype(np.int64)
    bad_tail = np.flatnonzero(tail >= 0)
    if bad_tail.size:
        found[("padding", consumer, int(n + bad_tail[0]))] = f"slot {int(tail[bad_tail[0]])}"
    return found


def _first(found: dict, rule: str, consumer: str, mask: np.ndarray, values: np.ndarray) -> None:
    hits = np.flatnonzero(mask)
    if hits.size:
        found[(rule, consumer, int(hits[0]))] = f"slot {int(values[hits[0]])} ({hits.size} tokens)"


def _repeatable(new: Callable[[], StepFn], case: Case, layers: int) -> str | None:
    """``None`` when two fresh runs and a rerun on the same instance agree byte for byte, else why not."""
    first_fn = new()
    first = _fingerprint(run_case(first_fn, case, layers))
    again = _fingerprint(observe(first_fn, case.state.step_inputs(), layers))
    fresh = _fingerprint(run_case(new(), case, layers))
    if first != fresh:
        return "two fresh instances disagree"
    if first != again:
        return "the same state twice on one instance disagrees (stale state)"
    return None


def _fingerprint(obs: Observation) -> tuple[Any, ...]:
    def arr(a: np.ndarray | None) -> tuple[str, bytes] | None:
        return None if a is None else (a.dtype.str + str(a.shape), a.tobytes())

    layers = tuple(tuple(arr(layer[c]) for c in CONSUMERS) for layer in obs.layers)
    return obs.error, arr(obs.position_ids), layers, tuple(obs.hazards)
