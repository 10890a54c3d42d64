"""One pinned state per SPEC section 5 bug class (and the section 6 vectors), run as ``@example``s.

Why pinned: random generation finds these classes, but a gate must check them on every run, even
with ``--max-examples 1``. Class 7 (stale state across steps) needs history: it is pinned as a
two-step case, whose first step fills the persistent buffers the second step must not leak. Class 3 is
pinned twice: on fresh buffers, and on the buffers a server serves with (after its start-up's last warm-up) at
the widest tail a capture launches, so a tail reset that stops short of the launch is caught on every run.
"""

from __future__ import annotations

from properties.strategies import Case
from validation.start_up import start_up_steps

_BIG = 2**31 // 64  # 33,554,432: the first block id whose slots overflow int32 at block size 64

def _decodes(n: int) -> dict:
    """``n`` decoding requests, one token each, one block each: every request index carries a token."""
    return {"block_size": 64, "seq_lens_encoder": [0] * n, "seq_lens_decoder": [5] * n, "seq_lens_this_time": [1] * n,
            "block_tables": [[i] for i in range(n)]}


BUG_CLASSES: dict[str, dict] = {
    "1 chunked prefill continuation": {
        "block_size": 64, "seq_lens_encoder": [4, 0], "seq_lens_decoder": [62, 9], "seq_lens_this_time": [4, 1],
        "block_tables": [[10, 20], [5, -1]]},
    "1 prefix-cache hit": {
        "block_size": 64, "seq_lens_encoder": [3], "seq_lens_decoder": [64], "seq_lens_this_time": [3],
        "block_tables": [[12, 7]]},
    "2 block size 16": {
        "block_size": 16, "seq_lens_encoder": [20], "seq_lens_decoder": [0], "seq_lens_this_time": [20],
        "block_tables": [[5, 9]]},
    "3 cuda-graph padding": {
        "block_size": 64, "seq_lens_encoder": [0, 0], "seq_lens_decoder": [10, 70], "seq_lens_this_time": [1, 1],
        "block_tables": [[3, -1], [4, 8]], "padded_num_tokens": 4, "max_num_batched_tokens": 8},
    "4 mtp draft crossing a block": {
        "block_size": 64, "seq_lens_encoder": [0], "seq_lens_decoder": [63], "seq_lens_this_time": [3],
        "block_tables": [[7, 3]]},
    "5 idle slot between active ones": {
        "block_size": 64, "seq_lens_encoder": [0, 0, 0], "seq_lens_decoder": [10, 20, 5],
        "seq_lens_this_time": [1, 0, 2], "block_tables": [[1], [2], [3]]},
    "5 empty batch": {
        "block_size": 64, "seq_lens_encoder": [0], "seq_lens_decoder": [0], "seq_lens_this_time": [0],
        "block_tables": [[-1]], "padded_num_tokens": 1},
    "5 batch past 256 requests": _decodes(300),
    "5 batch past the 1024-thread launch": _decodes(1100),
    "6 int32 overflow": {
        "block_size": 64, "seq_lens_encoder": [0], "seq_lens_decoder": [5], "seq_lens_this_time": [1],
        "block_tables": [[_BIG]]},
    "8 overlap estimate": {
        "block_size": 64, "seq_lens_encoder": [2, 0], "seq_lens_decoder": [0, 30], "seq_lens_this_time": [2, 1],
        "block_tables": [[9], [11]], "padded_num_tokens": 5, "max_num_batched_tokens": 16},
    "9 last column of the table": {
        "block_size": 64, "seq_lens_encoder": [0, 0], "seq_lens_decoder": [127, 3], "seq_lens_this_time": [1, 1],
        "block_tables": [[3, 7], [9, -1]]},
    "10 dtype (plain decode)": {
        "block_size": 64, "seq_lens_encoder": [0], "seq_lens_decoder": [10], "seq_lens_this_time": [1],
        "block_tables": [[2]]},
    "spec 6 block size 4 prefill": {
        "block_size": 4, "seq_lens_encoder": [6], "seq_lens_decoder": [0], "seq_lens_this_time": [6],
        "block_tables": [[10, 20, 30, 40]]},
}

# Class 7: a long first step leaves slots in the persistent buffers; the short padded second step
# must not hand them to its padded rows.
STALE_HISTORY = [{
    "block_size": 64, "seq_lens_encoder": [6, 0], "seq_lens_decoder": [0, 10], "seq_lens_this_time": [6, 1],
    "block_tables": [[4], [5]]}]
STALE_FINAL = {
    "block_size": 64, "seq_lens_encoder": [0, 0], "seq_lens_decoder": [6, 11], "seq_lens_this_time": [1, 1],
    "block_tables": [[4], [5]], "padded_num_tokens": 4, "max_num_batched_tokens": 7}


# Class 3 on served buffers: 289 decoding requests replay the 320-token graph (capture sizes 288 and 320,
# validation.launch_padding), so 31 padded rows read the buffer. A server meets them after its start-up, whose last
# warm-up (one request prefilling the whole budget) left slot r in every row r: each stale and non-negative. The
# table is as wide as those rows' positions reach, and the 31 captured rows past bsz hold -1 (FD_DETERMINISTIC_MODE
# resets them after the warm-up, validation.start_up), so legacy's padded rows gather -1 and stay negative.
WIDE_TAIL_BUDGET = 320
WIDE_TAIL_REQUESTS = 289
WIDE_TAIL_WIDTH = WIDE_TAIL_BUDGET // 64
WIDE_TAIL_FINAL = {
    **_decodes(WIDE_TAIL_REQUESTS),
    "block_tables": [[i] + [-1] * (WIDE_TAIL_WIDTH - 1) for i in range(WIDE_TAIL_REQUESTS)],
    "padded_num_tokens": WIDE_TAIL_BUDGET, "max_num_batched_tokens": WIDE_TAIL_BUDGET,
    "block_tables_past_bsz": [[-1] * WIDE_TAIL_WIDTH] * (WIDE_TAIL_BUDGET - WIDE_TAIL_REQUESTS)}


def _served_history() -> list[dict]:
    """The start-up's last warm-up on a one-row runner: its prefill over the whole budget, then its decode."""
    return [state.to_dict() for state in start_up_steps([None], block_size=64, budget=WIDE_TAIL_BUDGET,
                                                        buffer_size=WIDE_TAIL_BUDGET, capture=False)]


def pinned_cases() -> list[Case]:
    """Every bug class as a ``Case``, history included (built fresh: states are validated on load)."""
    cases = [Case.from_dict(data, tags=(f"bug_class {name}",)) for name, data in BUG_CLASSES.items()]
    cases.append(Case.from_dict(STALE_FINAL, history=STALE_HISTORY, tags=("bug_class 7 stale state",)))
    cases.append(Case.from_dict(WIDE_TAIL_FINAL, history=_served_history(),
                                tags=("bug_class 3 widest capture tail on served buffers",)))
    return cases
