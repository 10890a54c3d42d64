"""The start-up a server runs before serving (``validation.start_up``) gives only states a runner accepts."""

from __future__ import annotations

import pytest

from validation.start_up import start_up_steps


@pytest.mark.parametrize("block_size", [1, 2, 3, 16, 64])
@pytest.mark.parametrize("mtp", [0, 1, 2, 4])
# FastDeploy asserts max_num_batched_tokens >= max_num_seqs (config.py@2d8338f9e4e6:2256): here 3 rows.
@pytest.mark.parametrize("budget", [3, 7, 64])
def test_the_servers_start_up_steps_are_valid_states(block_size: int, mtp: int, budget: int) -> None:
    """The nightly's multi_step stopped at block size 1 with MTP 2 before its first step: the start-up's decode
    wrote k + 1 = 3 tokens past a 64-token dummy prompt whose table had 2 spare blocks ("position 66 in logical
    block 66, past its table of 66 blocks"). Every start-up step must be a state a runner accepts."""
    rows: list[list[int] | None] = [None] * 3
    states = list(start_up_steps(rows, block_size=block_size, budget=budget, buffer_size=budget + 512,
                                 num_speculative_tokens=mtp))
    assert states
    for state in states:
        state.validate()
    decodes = [s for s in states if not s.seq_lens_encoder.any()]
    assert all(0 < int(s.seq_lens_this_time.max()) <= mtp + 1 for s in decodes)
    if 2 * block_size >= mtp + 1:  # the spare blocks hold the whole decode: every warm-up decodes k + 1 tokens
        assert all(int(s.seq_lens_this_time.max()) == mtp + 1 for s in decodes)
