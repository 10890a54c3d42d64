"""The oracle on cases computed by hand, and on every fixture's recorded truth."""

from __future__ import annotations

import pytest

from support import load_fixture, make_state, state_files
from validation.oracle import InvalidStateError, Oracle, truth
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
