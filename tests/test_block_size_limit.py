"""block_size is bounded by the cache writers' int32 argument, not by memory: a huge one is checked, not refused."""

from __future__ import annotations

import pytest

from validation import limits
from validation.errors import InputError
from validation.state import BatchState


def _state(block_size: int) -> dict:
    return {"block_size": block_size, "seq_lens_encoder": [3, 0], "seq_lens_decoder": [0, 5], "seq_lens_this_time": [3, 1],
            "block_tables": [[0], [1]], "padded_num_tokens": 4, "max_num_batched_tokens": 8}


def test_the_largest_int32_block_size_is_a_valid_state() -> None:
    assert limits.MAX_BLOCK_SIZE == 2**31 - 1
    assert BatchState.from_dict(_state(2**31 - 1)).block_size == 2**31 - 1


def test_past_int32_is_bad_input() -> None:
    with pytest.raises(InputError, match="block_size"):
        BatchState.from_dict(_state(2**31))
