"""What a faulted baseline would have computed: the stand-in the triage compares a candidate with.

Why: the legacy indexer hard-codes 64 tokens per block, so at a block size over 64 its table lookup
runs past the block table and the model faults (a ``KernelFault``) before it returns anything. The
triage then had nothing to compare with, and every wrong element of the candidate read as a
REGRESSION ("baseline=missing"), although each follows from a cause the baseline has too. The
stand-in is the baseline's surviving path, rebuilt from SPEC sections 2 and 4 in plain Python (no
code shared with ``validation.impls``): positions as the v1 position op writes them (a row it does
not write holds whatever the buffer held, as on the candidate's side), slots from those positions
with the config block size and the int32 product, and the v1 op's buffer overrun. A candidate
difference that matches it is the shared position op or the int32 product, not something the
candidate introduced; anything else stays a REGRESSION. Padded rows get no stand-in value (the
baseline's padding rows are unknown), so a padded row the candidate maps to a live slot stays a
REGRESSION.
"""

from __future__ import annotations

import numpy as np

from validation.seam import Observation
from validation.state import BatchState

# A slot the stand-in cannot name (its position lies off the table): equal to nothing a side writes.
UNKNOWN_SLOT = np.iinfo(np.int64).min
NOTE = ("the baseline faulted: compared with its surviving path (v1 positions, config block size, int32 product), "
        "rebuilt by validation/causes.py")


def v1_writes(state: BatchState) -> dict[int, int]:
    """Buffer index -> position the v1 op (``get_position_ids_and_mask_encoder_batch``) writes there.

    Thread ``t`` starts at the sum over earlier requests of ``enc`` plus ``this`` where ``dec > 0``; it
    writes ``enc[t]`` positions from 0, then, if ``dec[t] > 0``, ``this[t]`` positions from ``dec[t]``.
    """
    enc = [int(x) for x in state.seq_lens_encoder]
    dec = [int(x) for x in state.seq_lens_decoder]
    this = [int(x) for x in state.seq_lens_this_time]
    writes: dict[int, int] = {}
    offset = 0
    for t in range(len(this)):
        for i in range(enc[t]):
            writes[offset + i] = i
        if dec[t] > 0:
            for i in range(this[t]):
                writes[offset + enc[t] + i] = dec[t] + i
        offset += enc[t] + (this[t] if dec[t] > 0 else 0)
    return writes


def v1_extent(state: BatchState) -> int:
    """How many buffer entries the v1 op writes (past the real token count on a chunked request)."""
    return sum(int(e) + (int(t) if int(d) > 0 else 0)
               for e, d, t in zip(state.seq_lens_encoder, state.seq_lens_decoder, state.seq_lens_this_time))


def _wrap_int32(x: int) -> int:
    return (x + 2**31) % 2**32 - 2**31


def stand_in(state: BatchState, candidate: Observation, num_layers: int, *, padding: int | None = None) -> Observation:
    """The faulted baseline's surviving path on ``state``; rows v1 leaves unwritten take the candidate's
    position (both read a buffer the op did not write). ``padding``: a value for the padded rows
    (``None``: the arrays stop at the real tokens, so the padded rows read as missing)."""
    n, bs = state.num_tokens, state.block_size
    writes = v1_writes(state)
    cand_pos = candidate.position_ids
    positions = np.zeros(n, dtype=np.int32)
    for i in range(n):
        if i in writes:
            positions[i] = writes[i]
        elif cand_pos is not None and cand_pos.ndim == 1 and i < cand_pos.shape[0]:
            positions[i] = _wrap_int32(int(cand_pos[i]))
    rows = state.batch_id_per_token
    width = state.max_blocks
    tables = state.block_tables
    slots = np.full(n if padding is None else state.padded_num_tokens,
                    UNKNOWN_SLOT if padding is None else padding, dtype=np.int64)
    for i in range(n):
        pos, row = int(positions[i]), int(rows[i])
        if pos < 0 or row < 0 or pos // bs >= width:
            slots[i] = UNKNOWN_SLOT
            continue
        block = int(tables[row, pos // bs])
        slots[i] = _wrap_int32(_wrap_int32(block * bs) + pos % bs)
    hazards = []
    if v1_extent(state) > n:  # the op writes past the real rows: both sides run it, both overrun alike
        hazards = [h for h in candidate.hazards if h.startswith("position op (v1)")]
    layers = [{"indexer": slots.copy(), "attention": slots.copy()} for _ in range(num_layers)]
    return Observation(position_ids=positions, layers=layers, hazards=hazards)
