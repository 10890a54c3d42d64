"""The Paddle models against hand-derived kernel behaviour and against Paddle's own indexing."""

from __future__ import annotations

import numpy as np
import pytest

from support import make_state, requires_paddle
from validation import seam
from validation.impls import paddle_ops
from validation.impls.faults import KernelFault
from validation.impls.paddle_runtime import indexing_semantics, paddle

pytestmark = requires_paddle

CHUNKED = dict(block_size=64, seq_lens_encoder=[64, 0], seq_lens_decoder=[128, 10], seq_lens_this_time=[64, 1],
               block_tables=[[11, 12, 13, -1], [21, -1, -1, -1]])


def _run(name: str, **fields):
    state = make_state(**fields)
    return seam.observe(seam.resolve(name).new(), state.step_inputs(), 1)


def test_probe_agrees_with_paddle_fancy_indexing_and_the_model_gather() -> None:
    pd = paddle()
    table = pd.to_tensor(np.array([[10, 20, 30], [40, 50, 60]], dtype=np.int32))
    rows = pd.to_tensor(np.array([0, 1, -1, 0], dtype=np.int32))
    cols = pd.to_tensor(np.array([2, 0, 1, 4], dtype=np.int32))  # (0, 4) runs into row 1
    if indexing_semantics().negative_row_wraps:
        real = table[rows, cols].numpy().tolist()
        assert real == [30, 40, 50, 50]
        assert paddle_ops.gather_blocks(table, rows, cols, "t").numpy().tolist() == real
    else:  # a Paddle that raises on row -1: the model must fail the same way, not invent a value
        with pytest.raises(KernelFault, match="Paddle raises"):
            paddle_ops.gather_blocks(table, rows, cols, "t")


def test_v1_positions_on_a_chunked_continuation_restart_and_overflow_the_real_count() -> None:
    obs = _run("single_step", max_num_batched_tokens=256, **CHUNKED)
    # v1: request 0 writes 0..63, then 128..191 after them; request 1's token lands at index 128.
    assert obs.position_ids.tolist() == list(range(64)) + [128]
    assert obs.hazards == []


def test_v1_writes_past_a_tight_buffer_are_reported_as_hazards() -> None:
    obs = _run("legacy", **CHUNKED)
    assert obs.hazards == ["position op (v1) wrote 64 entries past its buffer of 65 (index up to 128)"]


def test_v3_and_renamed_op_are_right_on_the_same_state() -> None:
    for name in ("chunked_fix", "get_position_ids", "fused"):
        assert _run(name, max_num_batched_tokens=256, **CHUNKED).position_ids.tolist() == list(range(128, 192)) + [10]


def test_legacy_indexer_uses_64_whatever_the_config() -> None:
    obs = _run("legacy", block_size=16, seq_lens_decoder=[40], block_tables=[[9, 4, 2]])
    assert obs.layers[0]["attention"].tolist() == [2 * 16 + 8]
    assert obs.layers[0]["indexer"].tolist() == [9 * 64 + 40]


def test_int32_product_wraps_but_fused_does_not() -> None:
    fields = dict(block_tables=[[40_000_000, -1]])
    wrapped = (40_000_000 * 64 + 10 + 2**31) % 2**32 - 2**31
    assert _run("single_step", **fields).layers[0]["attention"].tolist() == [wrapped]
    assert _run("fused", **fields).layers[0]["attention"].tolist() == [40_000_000 * 64 + 10]
    assert _run("fused", **fields).position_ids.dtype == np.int64


def test_more_than_1024_requests_do_not_launch() -> None:
    n = 1025
    obs = _run("single_step", seq_lens_encoder=[0] * n, seq_lens_decoder=[1] * n, seq_lens_this_time=[1] * n,
               block_tables=[[i] for i in range(n)])
    assert obs.error is not None and "<<<1, 1025>>>" in obs.error


def test_single_step_slot_buffer_tail_persists_across_steps() -> None:
    impl = seam.resolve("single_step").new()
    big = make_state(seq_lens_encoder=[0, 0], seq_lens_decoder=[10, 20], seq_lens_this_time=[1, 1],
                     block_tables=[[3], [4]], max_num_batched_tokens=8)
    small = make_state(seq_lens_decoder=[11], block_tables=[[3]], padded_num_tokens=2, max_num_batched_tokens=8)
    impl(big.step_inputs())
    out = impl(small.step_inputs())
    assert out["slot_mapping"].tolist() == [3 * 64 + 11, 4 * 64 + 20]  # the stale tail leaks step 1's slot


def test_legacy_padding_reads_the_last_row_with_the_buffer_tail_positions() -> None:
    obs = _run("legacy", seq_lens_encoder=[0, 0], seq_lens_decoder=[5, 130], seq_lens_this_time=[1, 1],
               block_tables=[[2, -1, -1], [4, 6, 8]], padded_num_tokens=4)
    assert obs.layers[0]["attention"].tolist() == [133, 514, 256, 256]
