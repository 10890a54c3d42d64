"""Every hypothesis strategy of the suite, in one place (tests never build inputs inline).

A case is drawn as a handful of sizes and knobs plus one seed; the scheduler model
(``properties.schedule_model``) builds the whole batch from them, so every state is one a server could
make and ``BatchState.validate()`` accepts it. Shrinking works on the sizes (fewer requests, shorter
contexts, the plain block size, no padding), which is what makes a counterexample small.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from hypothesis import event, target
from hypothesis import strategies as st

from properties.schedule_model import INT32_MAX, LAUNCH_LIMIT, MAX_TABLE_CELLS, PHASES, Scheduler, Step, state_tags
from validation.launch_padding import MAX_OVERLAP, PADDINGS
from validation.start_up import MAX_MODEL_LEN
from validation.state import MAX_NUM_SEQS, BatchState

DEFAULT_BLOCK_SIZES = (64,)
# States built per hypothesis example by ``case_batches`` (one draw of the knobs, a seed per state).
BATCH_STATES = 8
SWEEP_BLOCK_SIZES = (1, 16, 32, 48, 64, 100, 128, 256)
# Token budgets (max_num_batched_tokens less the overlap margin), the first is the shrink target. Small
# ones dominate: a state's cost is in its token count, and a small budget is what makes chunks.
BUDGETS = (128, 16, 32, 64, 256, 1024)

# Batch-size tiers drawn from a 0..31 dial: mostly a few requests, sometimes dozens, rarely past the
# one-block launch limit (cheap to make, but each is a 1000-row table).
# Large batches get a decode-sized budget (two tokens a request), or the scheduler would fill its
# budget from the first slots and requests past index 255 (or 1023) would never carry a token.
BATCH_TIERS = ((0, 21, 1, 8), (22, 28, 9, 96), (29, 30, 97, LAUNCH_LIMIT), (31, 31, LAUNCH_LIMIT + 1, LAUNCH_LIMIT + 64))
LARGE_BATCH = 96
# Context tiers from a 0..9 dial: short most often, up to DeepSeek-V3.2's maximum rarely. The long tier's cap
# is the most the table allows (not a hypothesis integer, which stays small): long contexts at every block size.
CONTEXT_TIERS = ((0, 6, 160), (7, 8, 8192), (9, 9, MAX_MODEL_LEN, MAX_MODEL_LEN))
# In the long tier, how often a request sits in the last 1024 tokens of its cap (``context:near_max``).
NEAR_MAX_SHARE = 0.25
# How often the seed alone puts a case in the long tier (derandomised runs draw the dial's 9 too rarely).
LONG_SHARE = 1 / 16
# Phase mixes: how often each slot is in each phase (order of ``PHASES``).
MIXES: dict[str, tuple[float, ...]] = {
    #           empty idle prefill chunked prefix decode mtp
    "all":      (1, 1, 2, 2, 2, 3, 2),
    "decode":   (1, 1, 0, 0, 0, 6, 3),
    "prefill":  (0, 0, 5, 3, 2, 0, 0),
    "chunked":  (0, 1, 1, 5, 3, 1, 1),
    "sparse":   (4, 3, 1, 1, 0, 1, 1),
}


# What the legacy model's uninitialised position buffer holds (``prior_position_ids``), the first the shrink
# target: realistic (zeros, stale positions of these requests) and adversarial (huge, negative, a mix).
PRIOR_KINDS = ("none", "zeros", "stale", "large", "negative", "mixed")
# What the runner's block-table rows past bsz hold when a captured graph replays (``block_tables_past_bsz``):
# reset by an abort (-1), a finished request's blocks (rows are not reset on completion, SPEC 4a; its blocks
# are free and may be live again), or the capture dummy runs' ``arange`` tables (gpu_model_runner.py
# lines 1152-1154 at 2d8338f9e4e6).
PAST_KINDS = ("none", "empty", "finished", "warmup")
ADVERSARIAL_POSITIONS = (INT32_MAX, 2**30, 1_000_000, MAX_MODEL_LEN, -1, -2, -65, -(2**31))


@dataclass(frozen=True)
class Case:
    """A generated step: the state, each slot's phase, its scenarios, and earlier steps (``history``)
    that must run first on the same implementation instances (a multi-step counterexample)."""

    state: BatchState
    phases: tuple[str, ...] = ()
    tags: frozenset[str] = frozenset()
    history: tuple[BatchState, ...] = field(default=(), compare=False)

    @classmethod
    def from_dict(cls, data: dict, *, history: Sequence[dict] = (), tags: Sequence[str] = ()) -> Case:
        """A pinned case (``@example``, regression file): scenarios are recomputed from the state."""
        return cls.of(BatchState.from_dict(data), history=tuple(BatchState.from_dict(h) for h in history), tags=tags)

    @classmethod
    def of(cls, state: BatchState, *, history: tuple[BatchState, ...] = (), tags: Sequence[str] = ()) -> Case:
        """A case of a state no scheduler run described (pinned, or reduced): phases and scenarios read from it."""
        phases = tuple(_phase_of(state, b) for b in range(state.bsz))
        all_tags = frozenset(state_tags(state, padding_kind(state), phases)) | frozenset(tags)
        return cls(state, phases, all_tags, history)

    def __repr__(self) -> str:
        history = f", history=[{len(self.history)} states]" if self.history else ""
        return f"Case.from_dict({self.state.to_json()}{history})"


def padding_kind(state: BatchState) -> str:
    """``overlap`` when the runner's own token count is the padded launch (an over-estimate run eagerly),
    ``capture`` when a captured graph pads past it, ``none`` otherwise."""
    if state.padded_num_tokens <= state.num_tokens:
        return "none"
    return "overlap" if state.launch_tokens == state.padded_num_tokens else "capture"


def _phase_of(state: BatchState, b: int) -> str:
    enc, dec, this = (int(a[b]) for a in (state.seq_lens_encoder, state.seq_lens_decoder, state.seq_lens_this_time))
    if this == 0:
        return "idle" if dec > 0 else "empty"
    if enc > 0:
        return "chunked" if dec > 0 else "prefill"
    return "mtp" if this > 1 else "decode"


def note(case: Case, *, steer: bool = True) -> None:
    """Record the case's scenarios with ``event()`` and (once per test case: ``steer``) push block ids
    towards the int32 overflow threshold with ``target()``."""
    for tag in sorted(case.tags):
        event(tag)
    if steer:
        target(_overflow_score(case.state), label="largest block id / int32 overflow threshold")


def _overflow_score(state: BatchState) -> float:
    ids = state.block_tables[state.block_tables >= 0]
    return 0.0 if ids.size == 0 else float(int(ids.max()) * state.block_size) / INT32_MAX


def _dial(draw: st.DrawFn, tiers: tuple[tuple[int, ...], ...], hi: int, cap: int | None = None) -> int:
    """Pick a tier with a dial (low dial values are common and shrink first), then a size in it."""
    dial = draw(st.integers(0, max(t[1] for t in tiers)))
    for tier in tiers:
        if tier[0] <= dial <= tier[1]:
            low, high = (tier[2], tier[3]) if len(tier) == 4 else (1, tier[2])
            high = min(high, hi if cap is None else cap)
            return draw(st.integers(min(low, high), high))
    raise AssertionError("dial outside every tier")


@st.composite
def cases(draw: st.DrawFn, block_sizes: Sequence[int] = DEFAULT_BLOCK_SIZES) -> Case:
    """One step of a server's batch: sizes and knobs are drawn, the scheduler model builds the rest."""
    knobs = _knobs(draw, block_sizes)
    case = _build_case(knobs, knobs["seed"])
    note(case)
    return case


@st.composite
def case_batches(draw: st.DrawFn, block_sizes: Sequence[int] = DEFAULT_BLOCK_SIZES,
                 size: int = BATCH_STATES) -> list[Case]:
    """``size`` states from one draw: the knobs are drawn once, each state has its own scheduler seed.

    Why: a hypothesis example costs far more than the scheduler model's state (the engine's bookkeeping,
    a dozen draws, the target optimiser); here it is paid once for ``size`` states. The first state is
    exactly what ``cases()`` draws; the others differ in the seed alone, so shrinking the knobs (fewer
    requests, shorter contexts, no padding, the plain block size) shrinks every state of the batch, and a
    failing one is still reported alone, minimal in every knob.
    """
    knobs = _knobs(draw, block_sizes)
    seed = knobs["seed"]
    batch = [_build_case(knobs, seed)] + [_build_case(knobs, [seed, i]) for i in range(1, size)]
    for tag in sorted(frozenset().union(*(c.tags for c in batch))):
        event(tag)
    target(max(_overflow_score(c.state) for c in batch), label="largest block id / int32 overflow threshold")
    return batch


def _knobs(draw: st.DrawFn, block_sizes: Sequence[int]) -> dict:
    """Every hypothesis-drawn choice of one case: sizes first (they shrink first), the knobs, the seed."""
    block_size = draw(st.sampled_from(tuple(block_sizes)))
    bsz = _dial(draw, BATCH_TIERS, LAUNCH_LIMIT + 64)
    max_ctx = max(1, min(MAX_MODEL_LEN - 8, MAX_TABLE_CELLS * block_size // bsz - 3 * block_size))
    ctx_cap = _dial(draw, CONTEXT_TIERS, MAX_MODEL_LEN, cap=max_ctx)
    padding = draw(st.sampled_from(PADDINGS))
    # Only a decode-only step pads (validation.launch_padding): capture draws decode-only steps, overlap half.
    decode = padding == "capture" or (padding == "overlap" and draw(st.booleans()))
    knobs = {
        "mix": "decode" if decode else draw(st.sampled_from(tuple(MIXES))),
        "budget": max(draw(st.sampled_from(BUDGETS)), 2 * bsz if bsz > LARGE_BATCH else 0),
        "padding": padding,
        "overlap_extra": draw(st.integers(1, MAX_OVERLAP)),
        "huge_ids": draw(st.integers(0, 15)) == 15,
        "fragmented": draw(st.integers(0, 3)) != 0,
        "lookahead": draw(st.integers(0, 2)),
        "extra_width": draw(st.integers(0, 2)),
        "boundary": draw(st.integers(0, 3)) == 3,
    }
    seed = draw(st.integers(0, 2**32 - 1))  # drawn here, where cases() always drew it: the same draws as before
    runner = {"prior_kind": draw(st.sampled_from(PRIOR_KINDS)), "past_kind": draw(st.sampled_from(PAST_KINDS)),
              "past_count": draw(st.integers(1, 4))}
    return {"block_size": block_size, "bsz": bsz, "ctx_cap": ctx_cap, "max_ctx": max_ctx, "step": knobs,
            "seed": seed, "runner": runner}


def _build_case(knobs: dict, seed: int | list[int]) -> Case:
    """The scheduler model's state for drawn ``knobs`` and one numpy ``seed``."""
    rng = np.random.default_rng(seed)
    ctx_cap = knobs["ctx_cap"]
    if rng.random() < LONG_SHARE:  # the long tier by the seed too: hypothesis' own draws of the dial cluster
        ctx_cap = knobs["max_ctx"]
    step_knobs, runner = knobs["step"], knobs["runner"]
    step = build_step(rng, block_size=knobs["block_size"], bsz=knobs["bsz"], ctx_cap=ctx_cap, **step_knobs)
    state = with_runner(rng, step.state, step_knobs["padding"], **runner)
    past_kind = runner["past_kind"] if state.block_tables_past_bsz is not None else "none"
    tags = step.tags | {f"legacy_buffer:{runner['prior_kind']}", f"captured_rows:{past_kind}"}
    return Case(state, step.phases, frozenset(tags))


def with_runner(rng: np.random.Generator, state: BatchState, padding: str, prior_kind: str, past_kind: str,
                past_count: int) -> BatchState:
    """The runner's buffers around a scheduled step (SPEC 4a): an overlap step's estimate is the runner's own
    token count; a replayed capture may cover rows past bsz; legacy's position buffer holds what it holds."""
    changes: dict = {}
    if padding == "overlap":
        changes["launch_num_tokens"] = state.padded_num_tokens
    prior = prior_positions(rng, state, prior_kind)
    if prior is not None:
        changes["prior_position_ids"] = prior
    replay = padding == "capture" and state.padded_num_tokens > state.num_tokens
    small = state.bsz + past_count <= MAX_NUM_SEQS and (state.bsz + past_count) * state.max_blocks <= MAX_TABLE_CELLS
    if replay and small and past_kind != "none":
        changes["block_tables_past_bsz"] = past_rows(rng, state, past_kind, past_count)
    return state.with_runner_fields(**changes) if changes else state


def prior_positions(rng: np.random.Generator, state: BatchState, kind: str) -> np.ndarray | None:
    """Contents of legacy's ``paddle.empty`` position buffer over the padded launch, or None (zeros)."""
    size = min(state.padded_num_tokens, state.max_num_batched_tokens)
    if kind == "none" or size == 0:
        return None
    if kind == "zeros":
        return np.zeros(size, dtype=np.int32)
    live = state.seq_lens_this_time > 0
    real = np.concatenate([state.seq_lens_decoder[b] + np.arange(state.seq_lens_this_time[b]) for b in np.flatnonzero(live)]
                          or [np.arange(1)]).astype(np.int64)
    stale = np.maximum(rng.choice(real, size) - rng.integers(0, 3, size), 0)  # earlier steps' positions
    wild = rng.choice(np.asarray(ADVERSARIAL_POSITIONS, dtype=np.int64), size)
    if kind == "stale":
        out = stale
    elif kind == "large":
        out = np.where(wild > 0, wild, stale)
    elif kind == "negative":
        out = np.where(wild < 0, wild, -rng.integers(1, 2 * state.block_size + 1, size))
    else:
        out = np.where(rng.random(size) < 0.5, stale, wild)
    return out.astype(np.int32)


def past_rows(rng: np.random.Generator, state: BatchState, kind: str, count: int) -> np.ndarray:
    """Block-table rows past bsz that a replayed capture still covers."""
    width = state.max_blocks
    rows = np.full((count, width), -1, dtype=np.int32)
    if kind == "finished":  # a finished request's row keeps its freed blocks, now another request's
        live = [b for b in range(state.bsz) if (state.block_tables[b] >= 0).any()]
        for r in range(count):
            if live:
                rows[r] = state.block_tables[live[int(rng.integers(len(live)))]]
    elif kind == "warmup":  # the capture dummy runs' arange(idx * block_num, (idx + 1) * block_num)
        block_num = int(rng.integers(1, width + 1))
        for r in range(count):
            idx = state.bsz + r
            rows[r, :block_num] = np.arange(idx * block_num, (idx + 1) * block_num, dtype=np.int64).clip(max=INT32_MAX)
    return rows


def build_step(rng: np.random.Generator, *, block_size: int, bsz: int, ctx_cap: int, mix: str, budget: int,
               padding: str, overlap_extra: int, huge_ids: bool, fragmented: bool, lookahead: int,
               extra_width: int, boundary: bool) -> Step:
    """Fill ``bsz`` slots with requests in phases drawn from ``mix`` and schedule one step."""
    weights = np.asarray(MIXES[mix], dtype=float)
    phases = rng.choice(len(PHASES), size=bsz, p=weights / weights.sum())
    plans = [_plan(rng, PHASES[p], block_size, ctx_cap, boundary) for p in phases.tolist()]
    pool = sum(math.ceil((plan["prompt"] + 8) / block_size) + lookahead + 1 for plan in plans if plan) + 8
    sched = Scheduler(rng, block_size=block_size, num_slots=bsz, budget=budget, pool_blocks=pool,
                      huge_ids=huge_ids, fragmented=fragmented)
    donors: list[int] = []  # earlier slots whose cache holds a full block to share as a prefix
    for slot, plan in enumerate(plans):
        if not plan:
            continue
        share = plan["share"] and donors
        req = sched.admit(slot, plan["prompt"], cached=plan["cached"], draft=plan["draft"], hit=plan["hit"],
                          prefix_from=donors[int(rng.integers(len(donors)))] if share else None)
        req.idle = plan["idle"]
        if req.cached >= block_size:
            donors.append(slot)
    return sched.schedule(padding=padding, overlap_extra=overlap_extra, lookahead=lookahead, extra_width=extra_width)


def _plan(rng: np.random.Generator, phase: str, bs: int, ctx_cap: int, boundary: bool) -> dict | None:
    """What one slot's request looks like before the step: prompt length, cached tokens, draft depth."""
    if phase == "empty":
        return None
    ctx = _context(rng, ctx_cap, bs, boundary)
    plan = {"prompt": ctx, "cached": 0, "draft": 0, "hit": False, "share": False, "idle": False}
    if phase == "chunked":
        plan["prompt"] = ctx + int(rng.integers(1, 2 * bs + 2))
        plan["cached"] = int(rng.integers(0, ctx + 1))
    elif phase == "prefix_hit":
        blocks = max(1, ctx // bs)
        plan.update(prompt=blocks * bs + int(rng.integers(1, 2 * bs + 2)), cached=blocks * bs, hit=True,
                    share=bool(rng.integers(0, 3)))
    elif phase in ("decode", "mtp", "idle"):
        plan["cached"] = ctx
        plan["draft"] = int(rng.integers(1, 5)) if phase == "mtp" else 0
        plan["idle"] = phase == "idle"
    return plan


def _context(rng: np.random.Generator, cap: int, bs: int, boundary: bool) -> int:
    """A context length in ``[1, cap]``, log-uniform (short ones most often), optionally on a block edge."""
    low = math.log(cap // 16) if cap >= 32_768 else 0.0  # the long tier: long contexts, not just possible ones
    high = math.log(cap + 1)
    # numpy's uniform(low, high) is low + (high - low) * random(), bit for bit: the same draw, without its
    # argument handling (a third of this function's cost, once per request).
    ctx = int(math.exp(low + (high - low) * rng.random()))
    if cap >= 32_768 and rng.random() < NEAR_MAX_SHARE:
        ctx = cap - int(rng.integers(0, 1024))
    if boundary and bs > 1:
        ctx = max(1, (ctx // bs) * bs + int(rng.integers(-1, 2)))
    return max(1, min(ctx, cap))
