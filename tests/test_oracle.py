"""The oracle on cases computed by hand, and on every fixture's recorded truth."""

from __future__ import annotations

import pytest

from support import load_fixture, make_state, state_files
from validation.oracle import InvalidStateError, Oracle, truth, truth_arrays
from validation.state import BatchState


def test_prefill_crossing_a_block() -> None:
    t = truth(make_state(block_size=4, seq_lens_encoder=[6], seq_lens_decoder=[0], seq_lens_this_time=[6],
                         block_tables=[[10, 20, 30, 40]]))
    assert t.positions == [0, 1, 2, 3, 4, 5]
    assert t.slots == [40, 41, 42, 43, 80, 81]
    assert [tok.logical_block for tok in t.tokens] == [0, 0, 0, 0, 1, 1]


def test_padding_rows_carry_no_request_and_accept_any_negative_slot() -> None:
    t = truth(make_state(padded_num_tokens=3))
    assert t.slots == [3 * 64 + 10, -1, -1]
    pad = t.tokens[1]
    assert pad.request is None and pad.accepts(-5) and not pad.accepts(0)
    assert t.tokens[0].accepts(202) and not t.tokens[0].accepts(201)


def test_slot_is_exact_past_int32() -> None:
    t = truth(make_state(block_tables=[[2**31 - 1, -1]]))
    assert t.slots == [(2**31 - 1) * 64 + 10]


def test_unallocated_block_under_a_real_token_is_no_slot() -> None:
    state = BatchState.from_dict(dict(block_size=64, seq_lens_encoder=[0], seq_lens_decoder=[10],
                                      seq_lens_this_time=[1], block_tables=[[-1]]), validate=False)
    with pytest.raises(InvalidStateError, match="logical block 0 is not allocated"):
        truth(state)


@pytest.mark.parametrize("path", state_files(), ids=lambda p: p.stem)
def test_fixture_truth_matches_the_hand_computed_expectation(path) -> None:
    doc = load_fixture(path)
    result = Oracle()(BatchState.from_dict(doc["state"]).step_inputs())
    assert result["position_ids"].tolist() == doc["expected"]["position_ids"]
    assert result["slot_mapping"].tolist() == doc["expected"]["slot_mapping"]
    assert str(result["slot_mapping"].dtype) == "int64"


def _same_as_truth(state: BatchState) -> bool:
    """``truth_arrays`` (the fuzzer's fast path) says what ``truth`` says, or None where ``truth`` raises."""
    arrays = truth_arrays(state)
    try:
        expected = truth(state)
    except InvalidStateError:
        return arrays is None
    return (arrays is not None and arrays[0].tolist() == expected.positions and arrays[1].tolist() == expected.slots)


def test_a_negative_position_is_no_slot_not_a_wrapped_index() -> None:
    """Position -3 at block size 4 is logical block -1: Python and numpy would read the row's last cell."""
    state = BatchState.from_dict(dict(block_size=4, seq_lens_encoder=[0], seq_lens_decoder=[-3],
                                      seq_lens_this_time=[2], block_tables=[[7, 8]]), validate=False)
    with pytest.raises(InvalidStateError, match="seq_lens_decoder -3 is negative"):
        truth(state)
    assert truth_arrays(state) is None


@pytest.mark.parametrize("path", state_files(), ids=lambda p: p.stem)
def test_the_numpy_form_agrees_with_the_truth_on_every_fixture(path) -> None:
    assert _same_as_truth(BatchState.from_dict(load_fixture(path)["state"], validate=False))


def test_the_numpy_form_agrees_past_int32_and_says_none_where_a_token_has_no_slot() -> None:
    assert _same_as_truth(make_state(block_tables=[[2**31 - 1, -1]], padded_num_tokens=4))
    assert _same_as_truth(BatchState.from_dict(dict(block_size=64, seq_lens_encoder=[0], seq_lens_decoder=[10],
                                                    seq_lens_this_time=[1], block_tables=[[-1]]), validate=False))
    assert _same_as_truth(BatchState.from_dict(dict(block_size=4, seq_lens_encoder=[0], seq_lens_decoder=[8],
                                                    seq_lens_this_time=[1], block_tables=[[1, 2]]), validate=False))


def test_the_numpy_form_agrees_on_generated_states() -> None:
    from hypothesis import HealthCheck, given, settings  # noqa: PLC0415

    from properties.strategies import SWEEP_BLOCK_SIZES, case_batches  # noqa: PLC0415

    @settings(max_examples=40, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(batch=case_batches(SWEEP_BLOCK_SIZES))
    def agree(batch) -> None:
        for case in batch:
            assert _same_as_truth(case.state), case

    agree()
