"""The model runner: one scheduled step -> the seam's step inputs -> slots -> the model's forward.

Per step it builds, from the engine's own state, exactly the mapping ``BatchState.step_inputs()``
describes (one row per batch slot, empty rows all zero with -1 block tables, tokens packed row after
row, CUDA-graph padding rows with batch id -1), calls the slot-mapping implementation under test
through the seam, and feeds what it returned to the model: the positions it computed (RoPE) and, per
layer and consumer, the slots every launched row is written to. The implementation is instantiated
once per engine, so its persistent buffers live across steps as in FastDeploy's model runner.

Launch sizes (``padding``, ``validation.launch_padding``, where FastDeploy's rules are cited): ``none``
launches the real token count; ``capture`` pads a decode-only step to the next size of FastDeploy's default
CUDA-graph capture list for the engine's ``max_num_seqs`` (a step that prefills, or is above the largest
size, runs eagerly, unpadded); ``overlap`` launches the overlap schedule's prediction, the number of
requests that ran the previous step when neither step prefilled (it exceeds the real count by the requests
that finished in between), given to the slot mapping as ``launch_num_tokens``. The persistent buffers
(``max_num_batched_tokens`` in the mapping) hold the larger of the token budget and ``max_num_seqs``, which
bounds every launch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from evals.engine.scheduler import SchedulerOutput
from validation.launch_padding import launch_size
from validation.seam import Observation, StepFn, observe
from validation.state import BatchState

PAD_TOKEN_ID = 0  # what a padding row computes (its K/V are written wherever its slot points)


class SlotMappingFailure(RuntimeError):
    """The implementation under test raised, returned something unusable, or wrote out of bounds."""


@dataclass
class StepBatch:
    """One step's inputs: the batch state (whose ``step_inputs()`` the seam hands an implementation) and the
    model's token arrays (all numpy)."""

    state: BatchState  # the step as the suite's one batch-state type: what the seam and the triage read
    inputs: dict[str, Any]  # ``state.step_inputs()``, built once
    token_ids: np.ndarray  # int64 [padded]
    token_request: np.ndarray  # int32 [num_tokens]: row of each real token
    token_context: np.ndarray  # int32 [num_tokens]: cache entries each real token may see
    logits_rows: np.ndarray  # int64 [R]: last real row of each scheduled request
    logits_requests: list[int]  # request id of each logits row
    row_requests: dict[int, int] = field(default_factory=dict)  # row -> request id of every occupied row

    @property
    def num_tokens(self) -> int:
        return int(self.inputs["num_tokens"])

    @property
    def padded_num_tokens(self) -> int:
        return int(self.inputs["padded_num_tokens"])


@dataclass
class StepSlots:
    """What the implementation computed for one step, as the model consumes it."""

    observation: Observation
    positions: np.ndarray  # int64 [padded]: the implementation's positions, 0 past num_tokens
    layer_slots: list[tuple[np.ndarray, np.ndarray]]  # per layer (indexer, attention), int64 [padded]


def build_batch(output: SchedulerOutput, *, block_size: int, max_blocks: int, padding: str,
                max_num_batched_tokens: int, max_num_seqs: int, predicted: int = -1) -> StepBatch:
    """The step's inputs from the scheduler's decision and the requests' block tables (before the step
    is committed: each request's ``num_computed`` is still what its cache held before it). ``predicted`` is
    the overlap schedule's prediction from the previous step (-1: none, the real count is launched)."""
    bsz = output.num_rows
    enc = np.zeros(bsz, np.int32)
    dec = np.zeros(bsz, np.int32)
    this = np.zeros(bsz, np.int32)
    tables = np.full((bsz, max_blocks), -1, np.int32)
    rows = {row: request.request_id for row, request in output.occupied}
    token_ids: list[int] = []
    logits_rows: list[int] = []
    logits_requests: list[int] = []
    for share in output.scheduled:
        r, request = share.row, share.request
        enc[r] = share.num_tokens if share.prefilling else 0
        dec[r] = share.num_cached
        this[r] = share.num_tokens
        token_ids.extend(request.tokens[share.num_cached:share.num_cached + share.num_tokens])
        logits_rows.append(len(token_ids) - 1)
        logits_requests.append(request.request_id)
    for r, request in output.occupied:
        dec[r] = request.num_computed
        blocks = request.table.blocks
        tables[r, :len(blocks)] = blocks
    num_tokens = int(this.sum())
    decode_only = not any(share.prefilling for share in output.scheduled)
    padded = launch_size(num_tokens, padding, decode_only=decode_only, max_num_seqs=max_num_seqs, predicted=predicted)
    token_request = np.repeat(np.arange(bsz, dtype=np.int32), this)
    starts = np.repeat(dec, this).astype(np.int32)
    within = np.arange(num_tokens, dtype=np.int32) - np.repeat(np.cumsum(this) - this, this).astype(np.int32)
    cu = np.zeros(bsz + 1, np.int32)
    np.cumsum(this, out=cu[1:])
    # The runner fields of the faithful models (SPEC 4a): under overlap the runner's own token count is the
    # estimate (its extra rows gathered eagerly by #7367); the legacy position buffer starts zeroed (None); the
    # engine's block table has no rows past the batch (None).
    state = BatchState(seq_lens_encoder=enc, seq_lens_decoder=dec, seq_lens_this_time=this, block_tables=tables,
                       block_size=block_size, padded_num_tokens=padded,
                       max_num_batched_tokens=max(max_num_batched_tokens, max_num_seqs),
                       launch_num_tokens=padded if padding == "overlap" else None)
    ids = np.full(padded, PAD_TOKEN_ID, np.int64)
    ids[:num_tokens] = token_ids
    return StepBatch(state, state.step_inputs(), ids, token_request, starts + within + 1,
                     np.asarray(logits_rows, np.int64),
                     logits_requests, rows)


def compute_slots(fn: StepFn, batch: StepBatch, num_layers: int) -> StepSlots:
    """Call the implementation on the step's mapping; turn what it returned into the model's inputs,
    or raise ``SlotMappingFailure`` saying why the model cannot run on it."""
    fresh = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in batch.inputs.items()}
    obs = observe(fn, fresh, num_layers)
    if obs.error is not None:
        raise SlotMappingFailure(f"the slot-mapping implementation failed: {obs.error}")
    n, padded = batch.num_tokens, batch.padded_num_tokens
    pos = obs.position_ids
    if pos is None or pos.ndim != 1 or not np.issubdtype(pos.dtype, np.integer) or pos.shape[0] < n:
        shape = None if pos is None else f"{pos.dtype} {list(pos.shape)}"
        raise SlotMappingFailure(f"position_ids must be integers of at least {n} entries, got {shape}")
    positions = np.zeros(padded, np.int64)
    positions[:n] = pos[:n]
    layer_slots = []
    for layer, consumers in enumerate(obs.layers[:num_layers]):
        pair = []
        for consumer in ("indexer", "attention"):
            slots = consumers[consumer]
            if slots.ndim != 1 or not np.issubdtype(slots.dtype, np.integer) or slots.shape[0] < padded:
                raise SlotMappingFailure(
                    f"layer {layer} {consumer} slots must be integers of at least {padded} entries (the launch), "
                    f"got {slots.dtype} {list(slots.shape)}: the consumer reads past them")
            pair.append(slots[:padded].astype(np.int64))
        layer_slots.append((pair[0], pair[1]))
    if len(layer_slots) < num_layers:
        raise SlotMappingFailure(f"slots for {len(layer_slots)} layers, the model has {num_layers}")
    return StepSlots(obs, positions, layer_slots)


def forward(model: Any, caches: Any, batch: StepBatch, slots: StepSlots) -> np.ndarray:
    """The model's forward on the step; an out-of-bounds cache write becomes ``SlotMappingFailure``."""
    try:
        return model.forward(caches, batch.token_ids, slots.positions, slots.layer_slots, batch.token_request,
                             batch.token_context, batch.inputs["block_tables"], int(batch.inputs["block_size"]),
                             batch.logits_rows)
    except IndexError as exc:
        raise SlotMappingFailure(f"out-of-bounds cache write: {exc}") from None
