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


# ---- SPEC 4a: the buffers as FastDeploy allocates and writes them ------------------------------------------

TWO_DECODES = dict(seq_lens_encoder=[0, 0], seq_lens_decoder=[5, 130], seq_lens_this_time=[1, 1],
                   block_tables=[[2, -1, -1], [4, 6, 8]])


@pytest.mark.parametrize("name", ["single_step", "chunked_fix", "get_position_ids", "fused"])
def test_fresh_single_step_buffers_are_zero_filled_so_padded_rows_read_slot_0(name: str) -> None:
    """input_batch.py@2d8338f9e4e6:193-194 allocates both buffers with paddle.zeros; nothing writes the tail."""
    obs = _run(name, padded_num_tokens=4, **TWO_DECODES)
    assert obs.layers[0]["attention"].tolist() == [133, 514, 0, 0]


def test_tail_reset_writes_minus_one_past_the_real_tokens_every_step() -> None:
    impl = seam.resolve("tail_reset").new()
    impl(make_state(padded_num_tokens=4, max_num_batched_tokens=8, **TWO_DECODES).step_inputs())
    out = impl(make_state(seq_lens_decoder=[11], block_tables=[[3]], padded_num_tokens=4,
                          max_num_batched_tokens=8).step_inputs())
    assert out["slot_mapping"].tolist() == [3 * 64 + 11, -1, -1, -1]


def test_legacy_position_buffer_starts_with_the_states_prior_contents() -> None:
    """deepseek_v3.py@d2d633b05c2c:1175 allocates it with paddle.empty: padded rows read what it held."""
    obs = _run("legacy", padded_num_tokens=4, prior_position_ids=[0, 0, 70, -1], **TWO_DECODES)
    # row 2: position 70 in the last row -> logical block 1 = 6; row 3: position -1 -> Paddle wraps column -1 (8)
    assert obs.layers[0]["attention"].tolist() == [133, 514, 6 * 64 + 6, 8 * 64 + 63]


def test_legacy_huge_stale_position_reads_past_the_table_and_faults() -> None:
    obs = _run("legacy", padded_num_tokens=3, prior_position_ids=[0, 0, 2**31 - 1], **TWO_DECODES)
    assert obs.error is not None and "token row 2" in obs.error


def test_legacy_replay_resolves_batch_id_minus_one_against_the_captured_rows_past_bsz() -> None:
    obs = _run("legacy", padded_num_tokens=3, block_tables_past_bsz=[[-1, -1, -1], [7, 9, -1]], **TWO_DECODES)
    assert obs.layers[0]["attention"].tolist() == [133, 514, 7 * 64]
    # an eager overlap step (the runner's own count is the launch) sees only the running rows
    eager = _run("legacy", padded_num_tokens=3, launch_num_tokens=3, block_tables_past_bsz=[[7, 9, -1]],
                 **TWO_DECODES)
    assert eager.layers[0]["attention"].tolist() == [133, 514, 4 * 64]


def test_single_step_gathers_overlap_rows_eagerly_from_the_last_running_row() -> None:
    """gpu_model_runner.py@2d8338f9e4e6:1287-1300: [:current_total_tokens] with batch id -1 past the real count."""
    obs = _run("single_step", padded_num_tokens=4, launch_num_tokens=3, **TWO_DECODES)
    # row 2 is an overlap row: batch id -1 -> row 1, position 0 from the zero-filled buffer -> block 4;
    # row 3 is graph padding: the zero fill
    assert obs.layers[0]["attention"].tolist() == [133, 514, 4 * 64, 0]
    assert _run("tail_reset", padded_num_tokens=4, launch_num_tokens=3,
                **TWO_DECODES).layers[0]["attention"].tolist() == [133, 514, -1, -1]


def test_fused_reads_batch_id_per_token_and_reports_a_minus_one_read_before_the_table() -> None:
    fields = dict(padded_num_tokens=2, batch_id_per_token=[0, -1], **TWO_DECODES)
    obs = _run("fused", **fields)
    assert obs.hazards == ["get_position_ids_and_slot_mapping: 1 token(s) with batch id -1 read block_tables before "
                           "its start; first: token 1 reads element -1 (4 bytes before the table)"]
    assert obs.layers[0]["attention"].tolist() == [133, 0]  # left as the buffer held it: never a wrapped value
    fixed = _run("tail_reset_fused", **fields)
    assert fixed.hazards == [] and fixed.layers[0]["attention"].tolist() == [133, -1]


def test_the_probe_finds_paddle_wrapping_a_negative_column() -> None:
    assert indexing_semantics().negative_col_wraps
    pd = paddle()
    table = pd.to_tensor(np.array([[10, 20, 30], [40, 50, 60]], dtype=np.int32))
    got = paddle_ops.gather_blocks(table, pd.to_tensor(np.array([0], np.int32)), pd.to_tensor(np.array([-1], np.int32)), "t")
    assert got.numpy().tolist() == table[pd.to_tensor([0]), pd.to_tensor([-1])].numpy().tolist() == [30]
