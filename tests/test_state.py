"""Every rule of ``BatchState.validate()``: impossible states are refused with field, index and rule."""

from __future__ import annotations

import json

import numpy as np
import pytest

from support import make_state
from validation.errors import InputError
from validation.state import BatchState, ranges


def test_derived_views_pack_tokens_request_after_request() -> None:
    state = make_state(seq_lens_encoder=[0, 0, 3], seq_lens_decoder=[10, 20, 0], seq_lens_this_time=[2, 0, 3],
                       block_tables=[[1], [2], [3]], padded_num_tokens=8)
    assert state.num_tokens == 5
    assert state.cu_seqlens_q.tolist() == [0, 2, 2, 5]
    assert state.batch_id_per_token.tolist() == [0, 0, 2, 2, 2, -1, -1, -1]
    assert state.batch_id_per_token.dtype == np.int32
    assert state.max_num_batched_tokens == 8


def test_round_trip_through_json() -> None:
    state = make_state(padded_num_tokens=4, max_num_batched_tokens=16, name="x")
    again = BatchState.from_dict(json.loads(state.to_json()))
    assert again.to_dict() == state.to_dict()


def test_empty_batch_is_valid() -> None:
    state = BatchState.from_dict(dict(block_size=64, seq_lens_encoder=[], seq_lens_decoder=[],
                                      seq_lens_this_time=[], block_tables=[]))
    assert state.num_tokens == 0 and state.bsz == 0


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"seq_lens_decoder": [-1]}, "seq_lens_decoder[0]: must be >= 0"),
        ({"seq_lens_this_time": [1, 1]}, "block_tables: has 1 rows but the batch has 2 requests"),
        ({"seq_lens_encoder": [0, 0]}, "seq_lens_encoder: has 2 entries but seq_lens_this_time has 1"),
        ({"block_size": 0}, "block_size: must be >= 1"),
        ({"block_size": True}, "block_size: must be an integer"),
        ({"seq_lens_decoder": [1.5]}, "seq_lens_decoder[0]: must be an integer"),
        ({"seq_lens_decoder": [2**31]}, "seq_lens_decoder[0]: must fit in int32"),
        ({"block_tables": [[3, -2]]}, "block_tables[0, 1]: block ids are >= 0, or -1"),
        ({"block_tables": [[-1, 3]]}, "block_tables[0, 0]: real token at position 10 of request 0 lies on an unallocated (-1) block"),
        ({"seq_lens_decoder": [130]}, "block_tables[0]: request 0 writes position 130 in logical block 2, past its table of 2 blocks"),
        ({"seq_lens_encoder": [5], "seq_lens_this_time": [4]}, "seq_lens_this_time[0]: a prefilling request"),
        ({"seq_lens_decoder": [0]}, "seq_lens_decoder[0]: a decoding request"),
        ({"padded_num_tokens": 0}, "padded_num_tokens: must be >= the real token count 1"),
        ({"padded_num_tokens": 4, "max_num_batched_tokens": 2}, "max_num_batched_tokens: the persistent buffers"),
        ({"block_tables": [[3], [4]]}, "block_tables: has 2 rows"),
        ({"block_tables": "x"}, "block_tables: must be a list of rows"),
        ({"bogus": 1}, "bogus: unknown field"),
    ],
)
def test_impossible_states_are_refused_in_one_line(fields: dict, message: str) -> None:
    with pytest.raises(InputError) as info:
        make_state(**fields)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_ragged_block_table_names_the_row() -> None:
    with pytest.raises(InputError, match=r"block_tables\[1\]: rows must all have 2 entries"):
        make_state(seq_lens_encoder=[0, 0], seq_lens_decoder=[10, 10], seq_lens_this_time=[1, 1],
                   block_tables=[[3, -1], [4]])


def test_one_physical_block_written_by_two_requests_is_refused() -> None:
    with pytest.raises(InputError, match=r"block_tables\[1, 0\]: physical block 3 is written this step by request 0"):
        make_state(seq_lens_encoder=[0, 0], seq_lens_decoder=[10, 12], seq_lens_this_time=[1, 1],
                   block_tables=[[3], [3]])


def test_shared_prefix_block_that_nobody_writes_is_allowed() -> None:
    state = make_state(seq_lens_encoder=[0, 0], seq_lens_decoder=[70, 80], seq_lens_this_time=[1, 1],
                       block_tables=[[5, 6], [5, 7]])
    assert state.num_tokens == 2


def test_missing_field_and_non_object() -> None:
    with pytest.raises(InputError, match="block_size: required field is missing"):
        BatchState.from_dict(dict(seq_lens_encoder=[], seq_lens_decoder=[], seq_lens_this_time=[], block_tables=[]))
    with pytest.raises(InputError, match="state: must be a JSON object"):
        BatchState.from_dict([1, 2])  # type: ignore[arg-type]


def test_numpy_arrays_of_the_wrong_dtype_are_refused() -> None:
    with pytest.raises(InputError, match="seq_lens_decoder: must be int32, got int64"):
        make_state(seq_lens_decoder=np.array([10], dtype=np.int64))


def test_malformed_json_file_names_line_and_column(tmp_path) -> None:
    path = tmp_path / "s.json"
    path.write_text('{"block_size": 64,\n "seq_lens_encoder": [0,}')
    with pytest.raises(InputError, match=r"s.json: malformed JSON at line 2 column"):
        BatchState.from_json(path)


# ---- the runner fields (SPEC 4a) ---------------------------------------------------------------------------

RUNNER_BASE = dict(block_size=64, seq_lens_encoder=[0, 0], seq_lens_decoder=[5, 3], seq_lens_this_time=[1, 1],
                   block_tables=[[1], [2]], padded_num_tokens=4)


def test_runner_fields_round_trip_and_reach_the_seam() -> None:
    state = BatchState.from_dict({**RUNNER_BASE, "launch_num_tokens": 3, "prior_position_ids": [7, 7, 7, -5],
                                  "block_tables_past_bsz": [[9], [-1]], "batch_id_per_token": [0, -1, -1, -1]})
    assert BatchState.from_dict(state.to_dict()).to_dict() == state.to_dict()
    inputs = state.step_inputs()
    assert inputs["launch_num_tokens"] == 3
    assert inputs["prior_position_ids"].tolist() == [7, 7, 7, -5]
    assert inputs["block_tables_past_bsz"].tolist() == [[9], [-1]]
    assert inputs["batch_id_per_token"].tolist() == [0, -1, -1, -1]


def test_a_state_without_runner_fields_keeps_its_json_and_defaults() -> None:
    state = BatchState.from_dict(RUNNER_BASE)
    assert not {"launch_num_tokens", "prior_position_ids", "block_tables_past_bsz", "batch_id_per_token"} & set(state.to_dict())
    inputs = state.step_inputs()
    assert inputs["launch_num_tokens"] == 2 and inputs["prior_position_ids"].size == 0
    assert inputs["block_tables_past_bsz"].shape == (0, 1)


@pytest.mark.parametrize(("fields", "message"), [
    ({"launch_num_tokens": 5}, "launch_num_tokens: the runner's token count lies between the real count 2 and the padded launch 4, got 5"),
    ({"launch_num_tokens": 1}, "launch_num_tokens: the runner's token count lies between"),
    ({"prior_position_ids": [0] * 5}, "prior_position_ids: holds the position buffer's 4 entries at most, got 5"),
    ({"prior_position_ids": [1.5]}, r"prior_position_ids\[0\]: must be an integer"),
    ({"block_tables_past_bsz": [[1, 2]]}, r"block_tables_past_bsz\[0\]: rows must all have 1 entries"),
    ({"block_tables_past_bsz": [[-2]]}, r"block_tables_past_bsz\[0, 0\]: block ids are >= 0, or -1; got -2"),
    ({"block_tables_past_bsz": [[-1]] * 511}, "block_tables_past_bsz: bsz 2 \\+ 511 rows past it exceed max_num_seqs <= 512"),
    ({"block_tables_past_bsz": 3}, "block_tables_past_bsz: must be a list of rows, got int"),
    ({"batch_id_per_token": [0, 1, -1]}, "batch_id_per_token: has one entry per launched row \\(4\\), got 3"),
    ({"batch_id_per_token": [1, 1, -1, -1]}, r"batch_id_per_token\[0\]: a row holds its token's request \(0\) or the -1"),
    ({"batch_id_per_token": [0, 1, 0, -1]}, r"batch_id_per_token\[2\]: a row holds its token's request \(-1\)"),
])
def test_runner_fields_that_no_runner_could_hold_are_refused_in_one_line(fields: dict, message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        BatchState.from_dict({**RUNNER_BASE, **fields})
    assert "\n" not in str(info.value)


def test_runner_fields_added_later_obey_the_same_rules() -> None:
    """``with_runner_fields`` (the scheduler model's shortcut past a second full validation) gives what a state built
    with those fields gives, refuses what ``from_dict`` refuses, and changes nothing but runner fields."""
    state = BatchState.from_dict(RUNNER_BASE)
    added = state.with_runner_fields(launch_num_tokens=3, block_tables_past_bsz=np.array([[9]], dtype=np.int32))
    built = BatchState.from_dict({**RUNNER_BASE, "launch_num_tokens": 3, "block_tables_past_bsz": [[9]]})
    assert added.to_dict() == built.to_dict()
    with pytest.raises(InputError, match="launch_num_tokens: the runner's token count lies between"):
        state.with_runner_fields(launch_num_tokens=5)
    with pytest.raises(InputError, match="prior_position_ids: holds the position buffer's 4 entries at most"):
        state.with_runner_fields(prior_position_ids=np.zeros(5, dtype=np.int32))
    with pytest.raises(TypeError, match="not runner fields: block_tables"):
        state.with_runner_fields(block_tables=np.array([[1], [1]], dtype=np.int32))


def test_ranges_walks_each_run_in_order_and_skips_empty_ones() -> None:
    assert ranges(np.array([5, 9, 2]), np.array([2, 0, 3])).tolist() == [5, 6, 2, 3, 4]
    assert ranges(np.zeros(0), np.zeros(0)).tolist() == []
