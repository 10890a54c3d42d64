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


def test_a_capped_report_keeps_the_first_findings_of_each_group_in_order_and_counts_the_rest() -> None:
    """``max_per_group`` only drops findings: the kept ones are the uncapped report's first of each (verdict,
    consumer), in the same order, and every dropped one is counted in ``elided``."""
    state = make_state(padded_num_tokens=40)  # one real token, 39 padded rows
    base = _obs([10], [202] + [-1] * 39)
    pad = np.asarray([202] + [5] * 39, dtype=np.int64)  # a live slot on every padded row: a REGRESSION each
    other = pad.copy()
    other[1::2] = 6  # layer 1 differs from layer 0 on odd rows: those fold no more, one finding per layer
    cand = Observation(position_ids=np.asarray([10], np.int32), layers=[
        {"indexer": pad, "attention": pad}, {"indexer": pad, "attention": other}])
    full = compare.triage(state, base, cand, "b", "c", num_layers=2)
    capped = compare.triage(state, base, cand, "b", "c", num_layers=2, max_per_group=3)
    kept: list = []
    seen: dict = {}
    for f in full.findings:
        key = (f.verdict, f.consumer)
        seen[key] = seen.get(key, 0) + 1
        if seen[key] <= 3:
            kept.append(f)
    assert capped.findings == kept
    assert dict(capped.elided) == {key: n - 3 for key, n in seen.items() if n > 3}
    assert seen == {(REGRESSION, "indexer"): 39, (REGRESSION, "attention"): 39 + 20}
    assert [f.layers for f in capped.findings if f.consumer == "attention"] == [(0,), (1,), (0, 1)]
    assert capped.counts == full.counts


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


# ---- a faulted baseline (issue 10: triage at block sizes other than 64) --------------------------
# At block size 256 the legacy indexer (block size 64) reads past the table and its model faults,
# returning nothing. The old rule then called every wrong element of the candidate a REGRESSION
# ("baseline=missing") and the v1 op's overrun, which both sides run, a REGRESSION "baseline=none".

FAULT = Observation(error="KernelFault: layer 0 indexer: reads block_tables out of bounds")
# A chunked continuation at block size 256: truth positions 256, 257 on block 7 (slots 1792, 1793).
# v1 restarts them at 0 (block 5: slots 1280, 1281) and writes the decode run past the 2-entry buffer.
CHUNKED_256 = make_state(block_size=256, seq_lens_encoder=[2], seq_lens_decoder=[256], seq_lens_this_time=[2],
                         block_tables=[[5, 7]], max_num_batched_tokens=2)
V1_OVERRUN = "position op (v1) wrote 2 entries past its buffer of 2 (index up to 3)"


def _faulted(state, cand: Observation) -> compare.Report:
    return compare.triage(state, FAULT, cand, "legacy", "single_step", num_layers=2)


def test_a_faulted_baseline_is_stood_in_for_and_shared_causes_are_not_regressions() -> None:
    cand = _obs([0, 1], [1280, 1281])
    cand.hazards = [V1_OVERRUN]
    report = _faulted(CHUNKED_256, cand)
    by_consumer = {(f.consumer, f.verdict) for f in report.findings}
    assert REGRESSION not in report.verdicts and report.exit_code() == 0
    assert {("position_ids", SHARED_BUG), ("indexer", SHARED_BUG), ("attention", SHARED_BUG),
            ("memory", SHARED_BUG), ("launch", FIX)} == by_consumer
    position = next(f for f in report.findings if f.consumer == "position_ids")
    assert (position.baseline, position.candidate, position.oracle) == (0, 0, 256)
    assert "the shared position op" in position.note and "baseline faulted" in position.note


def test_a_faulted_baseline_does_not_hide_a_difference_the_candidate_introduced() -> None:
    # Right positions, but slots one off: nothing the baseline shares explains them.
    report = _faulted(CHUNKED_256, _obs([256, 257], [1793, 1794]))
    assert {(f.consumer, f.verdict) for f in report.findings if f.consumer != "launch"} == {
        ("indexer", REGRESSION), ("attention", REGRESSION)}
    assert report.exit_code() == 1
    # A hazard from an op the stand-in does not run is the candidate's own.
    cand = _obs([0, 1], [1280, 1281])
    cand.hazards = ["slot op wrote 3 entries past its buffer of 2 (index up to 4)"]
    assert any(f.consumer == "memory" and f.verdict == REGRESSION for f in _faulted(CHUNKED_256, cand).findings)


def test_a_faulted_baseline_shares_the_int32_product() -> None:
    # Block size 100, a decode at position 64 (the 64-block indexer reads column 1 of a 1-wide table).
    state = make_state(block_size=100, seq_lens_decoder=[64], block_tables=[[21474842]])
    wrapped = (21474842 * 100 + 2**31) % 2**32 - 2**31 + 64
    report = _faulted(state, _obs([64], [wrapped]))
    slots = [f for f in report.findings if f.consumer in ("indexer", "attention")]
    assert slots and {f.verdict for f in slots} == {SHARED_BUG}
    assert all("int32 overflow" in f.note for f in slots) and report.exit_code() == 0
    # The candidate that takes the product in int64 is right: OK, only the launch FIX is reported.
    right = _faulted(state, _obs([64], [21474842 * 100 + 64]))
    assert [(f.consumer, f.verdict) for f in right.findings] == [("launch", FIX)]


def test_a_faulted_baseline_leaves_a_live_padded_slot_the_candidates() -> None:
    state = make_state(padded_num_tokens=3)  # decode at 10 on block 3 (slot 202), then 2 padded rows
    report = _faulted(state, _obs([10], [202, 0, 202]))
    padded = [f for f in report.findings if f.token in (1, 2)]
    assert padded and {f.verdict for f in padded} == {REGRESSION}
    assert all(f.baseline == compare.MISSING for f in padded)


def test_both_sides_faulting_is_still_one_shared_launch_finding() -> None:
    report = _faulted(CHUNKED_256, FAULT)
    assert [(f.consumer, f.verdict) for f in report.findings] == [("launch", SHARED_BUG)]


PLUGINS = '''
import numpy as np

def faulty(inputs):
    raise RuntimeError("KernelFault: layer 0 indexer: reads block_tables out of bounds")

def v1_like(inputs):
    return {"position_ids": np.asarray([0, 1, 0, 1], np.int32),
            "slot_mapping": np.asarray([1024, 1025, 1024, 1025], np.int64)}

def own_bug(inputs):
    return {"position_ids": np.asarray([0, 1, 0, 1], np.int32),
            "slot_mapping": np.asarray([1029, 1030, 1031, 1032], np.int64)}
'''


def test_the_invariants_property_stands_in_for_a_faulted_baseline_too(tmp_path) -> None:
    from properties.checks import invariants
    from properties.config import FuzzConfig
    from properties.strategies import Case

    path = tmp_path / "sides.py"
    path.write_text(PLUGINS)
    # Request 1 continues a prefill at 256 (block 7) and holds request 0's block 4 as its first block: v1
    # restarts it at 0, onto request 0's slots. The baseline faulted; the shared position op explains it.
    case = Case.from_dict(dict(block_size=256, seq_lens_encoder=[2, 2], seq_lens_decoder=[0, 256],
                               seq_lens_this_time=[2, 2], block_tables=[[4, -1], [4, 7]]))
    shared = invariants(case, FuzzConfig(f"{path}:faulty", f"{path}:v1_like"))
    assert {(f.consumer, f.verdict) for f in shared.findings} == {("invariant unique", SHARED_BUG)}
    # Slots off their positions' block offsets: a rule the baseline's surviving path keeps, the candidate's bug.
    own = invariants(case, FuzzConfig(f"{path}:faulty", f"{path}:own_bug"))
    assert ("invariant block_offset", REGRESSION) in {(f.consumer, f.verdict) for f in own.findings}
