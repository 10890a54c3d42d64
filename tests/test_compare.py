"""The triage itself: the classification table, the padding contract, dtype and shape, crashes, folding."""

from __future__ import annotations

import numpy as np
import pytest

from support import make_state
from validation import compare
from validation.compare import FIX, OK, REGRESSION, SHARED_BUG, classify
from validation.seam import Observation


@pytest.mark.parametrize(
    ("base_ok", "cand_ok", "equal", "verdict"),
    [
        (True, True, True, OK),
        (False, True, False, FIX),
        (True, False, False, REGRESSION),
        (False, False, False, REGRESSION),  # wrong differently
        (False, False, True, SHARED_BUG),
    ],
)
def test_classification_table(base_ok: bool, cand_ok: bool, equal: bool, verdict: str) -> None:
    assert classify(base_ok, cand_ok, equal) == verdict


def _obs(positions, slots, indexer=None, layers=2) -> Observation:
    slots = np.asarray(slots, dtype=np.int64) if not isinstance(slots, np.ndarray) else slots
    indexer = slots if indexer is None else np.asarray(indexer, dtype=np.int64)
    return Observation(position_ids=np.asarray(positions, dtype=np.int32),
                       layers=[{"indexer": indexer, "attention": slots} for _ in range(layers)])


STATE = make_state(padded_num_tokens=3)  # one decode at position 10 on block 3: slot 202, then 2 padding rows


def _triage(base: Observation, cand: Observation) -> compare.Report:
    return compare.triage(STATE, base, cand, "b", "c", num_layers=2)


def test_identical_right_outputs_are_all_ok() -> None:
    report = _triage(_obs([10], [202, -1, -1]), _obs([10], [202, -1, -1]))
    assert report.findings == [] and report.exit_code(strict=True) == 0
    assert report.counts[OK] == 1 + 1 + 2 * 2 * 3 + 2  # positions, dtype x3, 2 layers x 2 consumers x 3 rows


def test_a_regression_names_consumer_layer_token_and_the_right_side() -> None:
    base = _obs([10], [202, -1, -1])
    cand = Observation(position_ids=np.asarray([10], np.int32), layers=[
        {"indexer": np.asarray([202, -1, -1]), "attention": np.asarray([202, -1, -1])},
        {"indexer": np.asarray([202, -1, -1]), "attention": np.asarray([201, -1, -1])},
    ])
    report = _triage(base, cand)
    (finding,) = report.findings
    assert (finding.verdict, finding.consumer, finding.layers, finding.token) == (REGRESSION, "attention", (1,), 0)
    line = finding.line(2)
    assert line.startswith("REGRESSION attention layer 1 token 0 (request 0, position 10, logical block 0)")
    assert "baseline=202 candidate=201 oracle=202 [baseline matches the oracle" in line
    assert report.exit_code() == 1


def test_padding_any_negative_is_right_and_two_live_slots_share_one_bug() -> None:
    assert _triage(_obs([10], [202, -1, -1]), _obs([10], [202, -7, -64])).findings == []
    report = _triage(_obs([10], [202, 5, 6]), _obs([10], [202, 99, 100]))
    assert {f.verdict for f in report.findings} == {SHARED_BUG}
    assert all("padded token must map to a negative slot" in f.note for f in report.findings)


def test_findings_repeated_in_every_layer_fold_into_one() -> None:
    report = _triage(_obs([10], [202, -1, -1], indexer=[200, -1, -1]), _obs([10], [202, -1, -1]))
    (finding,) = report.findings
    assert (finding.verdict, finding.consumer, finding.layers) == (FIX, "indexer", (0, 1))
    assert "indexer all layers token 0" in finding.line(2)
    assert report.counts[FIX] == 2


def test_wrong_dtype_is_a_finding_even_when_values_agree() -> None:
    cand = _obs([10], np.asarray([202, -1, -1], dtype=np.int32))
    report = _triage(_obs([10], [202, -1, -1]), cand)
    assert [(f.verdict, f.consumer) for f in report.findings] == [(REGRESSION, "dtype"), (REGRESSION, "dtype")]


def test_a_short_slot_array_is_read_out_of_bounds() -> None:
    report = _triage(_obs([10], [202, -1, -1]), _obs([10], [202]))
    missing = [f for f in report.findings if f.candidate == compare.MISSING]
    assert {f.token for f in missing} == {1, 2} and all(f.verdict == REGRESSION for f in missing)
    assert "reads past it" in missing[0].note


def test_crashes_are_triaged_too() -> None:
    crash = Observation(error="KernelFault: boom")
    assert [f.verdict for f in _triage(_obs([10], [202, -1, -1]), crash).findings if f.consumer == "launch"] == [REGRESSION]
    assert [f.verdict for f in _triage(crash, crash).findings if f.consumer == "launch"] == [SHARED_BUG]
    assert [f.verdict for f in _triage(crash, _obs([10], [202, -1, -1])).findings] == [FIX]


def test_int32_wrap_is_named() -> None:
    state = make_state(block_tables=[[40_000_000, -1]])
    wrapped = (40_000_000 * 64 + 10 + 2**31) % 2**32 - 2**31
    report = compare.triage(state, _obs([10], [wrapped], layers=1), _obs([10], [wrapped], layers=1), "b", "c", 1)
    assert {f.note for f in report.findings} == {"int32 overflow of block_id * block_size"}
    assert {f.verdict for f in report.findings} == {SHARED_BUG}


def test_strict_exit_code_counts_any_finding() -> None:
    report = _triage(_obs([10], [202, 5, -1]), _obs([10], [202, -1, -1]))
    assert report.verdicts == {FIX}
    assert (report.exit_code(), report.exit_code(strict=True)) == (0, 1)


def _one(positions, attention, indexer) -> Observation:
    return Observation(position_ids=np.asarray(positions, np.int32),
                       layers=[{"indexer": np.asarray(indexer, np.int64), "attention": np.asarray(attention, np.int64)}])


BS16 = make_state(block_size=16, seq_lens_decoder=[20], block_tables=[[1, 2]])  # position 20: slot 2 * 16 + 4 = 36


def test_a_wrong_slot_the_baseline_computes_in_its_other_consumer_is_shared() -> None:
    report = compare.triage(BS16, _one([20], [99], [77]), _one([20], [99], [99]), "b", "c", 1)
    assert {(f.consumer, f.verdict) for f in report.findings} == {("attention", SHARED_BUG), ("indexer", SHARED_BUG)}
    assert "other consumer" in next(f.note for f in report.findings if f.consumer == "indexer")


def test_a_slot_downstream_of_a_shared_wrong_position_is_shared_even_when_the_baseline_is_right_by_chance() -> None:
    report = compare.triage(BS16, _one([0], [16], [36]), _one([0], [16], [16]), "b", "c", 1)
    indexer = next(f for f in report.findings if f.consumer == "indexer")
    assert indexer.verdict == SHARED_BUG and "by coincidence" in indexer.note
    assert report.exit_code() == 0


def test_without_a_shared_cause_a_differing_wrong_slot_stays_a_regression() -> None:
    report = compare.triage(BS16, _one([20], [36], [77]), _one([20], [36], [55]), "b", "c", 1)
    assert [(f.consumer, f.verdict) for f in report.findings] == [("indexer", REGRESSION)]
