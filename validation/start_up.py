"""What a FastDeploy server runs before it serves: the steps that leave its persistent buffers as served steps meet them.

A served step's padded rows read whatever the slot and position buffers hold past its real tokens, so a
model of serving must start where a server starts, not on freshly zeroed buffers. All [read] at 2d8338f9e4e6:
``gpu_worker.py:138`` calls ``profile_run`` (``gpu_model_runner.py:2643-2650``): one ``_dummy_run`` of
``max_num_seqs`` requests over ``get_max_chunk_tokens()`` tokens (the token budget, ``config.py:2430-2445``).
Then ``capture_model`` warms up every capture size, largest first (``:1984-1990``), each a ``_dummy_run`` of
that many requests over the same token count. A ``_dummy_run`` (``:1853-1944``) prefills ``budget // batch``
tokens per request (``get_input_length_list``, ``:1078-1104``) over block tables
``arange(idx * block_num, (idx + 1) * block_num)`` with ``block_num = ceil(length / block_size) +
enc_dec_block_num`` (``_dummy_prefill_inputs``, ``:1127-1155``), then decodes until its requests stop:
``max_dec_len = expected_decode_len + 1 = 2`` (``:1079``), which we read as one decode step [inferred].

After the warm-up, block tables keep the dummy runs' ``arange`` rows, unless ``FD_DETERMINISTIC_MODE`` is
on: then ``gpu_worker.py:250-255`` calls ``reset_share_inputs``, which sets every block-table row to -1
(``input_batch.py:598``) but leaves the slot and position buffers as they are (it never touches them,
``:515-685``). Either way a row is reset when a request is inserted into it (``gpu_model_runner.py:851,922,940``).

The last warm-up (batch 1) prefills ``budget`` tokens over blocks ``0 .. block_num - 1``: it leaves
``slot_mapping_buffer[r] = r`` for every row below the budget. Those are the lowest block ids, which
FastDeploy's min-heap allocator hands to the first requests (``prefix_cache_manager.py@2d8338f9e4e6:80,85,487``).
"""

from __future__ import annotations

from collections.abc import Iterator

from validation.launch_padding import capture_sizes
from validation.state import BatchState

# FD_ENC_DEC_BLOCK_NUM, the dummy tables' extra blocks (config.py@2d8338f9e4e6:1593; its default lives in
# envs.py, not in the snapshot: 2 is [inferred]).
ENC_DEC_BLOCK_NUM = 2
MAX_MODEL_LEN = 163_840  # DeepSeek-V3.2's context: caps a dummy prompt (get_input_length_list, :1080-1083)


def dummy_batches(max_num_seqs: int, *, capture: bool = True) -> list[int]:
    """The batch sizes of the start-up's dummy runs, in order: profile_run's, then (with CUDA graphs on) each
    capture size, largest first."""
    return [max_num_seqs, *(sorted(capture_sizes(max_num_seqs), reverse=True) if capture else ())]


def start_up_steps(rows: list[list[int] | None], *, block_size: int, budget: int, buffer_size: int,
                   capture: bool = True, num_speculative_tokens: int = 0) -> Iterator[BatchState]:
    """The start-up's steps over a runner of ``len(rows)`` block-table rows (``max_num_seqs``), each dummy run's
    prefill then its decode. ``rows`` (what each runner row holds; None: -1) is updated in place: a dummy run
    writes its ``arange`` rows, and rows past its batch keep what they held. Under MTP (``k`` drafts) the
    warm-up runs ``capture_size / (k + 1)`` requests per size (``gpu_model_runner.py:1970-1976``), the base
    sizes, each decoding ``k + 1`` tokens in its decode step [inferred: one step of its accepted drafts]."""
    n = len(rows)
    for batch in dummy_batches(n, capture=capture):
        length = min(budget // batch, MAX_MODEL_LEN - 2)
        block_num = -(-length // block_size) + ENC_DEC_BLOCK_NUM
        for b in range(batch):
            rows[b] = list(range(b * block_num, (b + 1) * block_num))
        width = max(len(r) for r in rows if r)
        tables = [(r or []) + [-1] * (width - len(r or [])) for r in rows]
        live = [b < batch for b in range(n)]
        prefill = [length if on else 0 for on in live]
        # The dummy table has ENC_DEC_BLOCK_NUM spare blocks past the prompt. At block size 1 (or 2) under MTP
        # that is less than the k + 1 tokens a decode writes; FastDeploy's kernels would then write past the
        # row, which no valid state can show, so the model decodes only what the table holds [inferred].
        step = min(num_speculative_tokens + 1, block_num * block_size - length)
        decode = [step if on else 0 for on in live]
        for enc, dec, this in ((prefill, [0] * n, prefill), ([0] * n, prefill, decode)):
            yield BatchState.from_dict({
                "seq_lens_encoder": enc, "seq_lens_decoder": dec, "seq_lens_this_time": this,
                "block_tables": tables, "block_size": block_size, "padded_num_tokens": sum(this),
                "max_num_batched_tokens": buffer_size})
