"""A model of a serving engine's scheduler and block allocator, the one source of every generated state.

Why a model and not element-by-element generation: a state is only worth testing if a server could
produce it (``BatchState.validate()`` accepts it), and the bugs live in the combinations a server
makes: chunked prefill under a token budget, prefix blocks shared between requests, a fragmented
pool, speculative drafts crossing a block, CUDA-graph padding. The single-step strategies and the
multi-step state machine both drive this one model, with a numpy ``Generator`` for every choice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from validation.launch_padding import MAX_NUM_SEQS, MAX_OVERLAP, launch_size
from validation.start_up import MAX_MODEL_LEN
from validation.state import BatchState

INT32_MAX = 2**31 - 1
LAUNCH_LIMIT = 1024  # threads in one CUDA block: <<<1, bsz>>> launches at most this many requests
# Bound on block-table cells (bsz * max_blocks): keeps block-size-1 sweeps and huge batches in memory.
MAX_TABLE_CELLS = 1 << 18

# A request's block ids before it holds any (shared: block arrays are replaced, never written in place).
NO_BLOCKS = np.zeros(0, dtype=np.int64)
NO_BLOCKS.flags.writeable = False

PHASES = ("empty", "idle", "prefill", "chunked", "prefix_hit", "decode", "mtp")


class PoolExhausted(RuntimeError):
    """The allocator has no free block left (the scheduler preempts or stops admitting)."""


class BlockPool:
    """Physical KV blocks, handed out lowest free id first, as FastDeploy's allocator does.

    ``PrefixCacheManager`` keeps its free GPU blocks in a min-heap (``heapify`` at
    ``cache_manager/prefix_cache_manager.py@2d8338f9e4e6:80,85``, ``heappop`` in ``allocate_gpu_blocks``
    ``:487``, ``heappush`` on recycling ``:522-524``) [read]. So a fresh server hands block 0 and the
    other low ids (the ones the capture warm-up's ``arange`` tables used) to its first requests.
    ``fragmented`` models a server that has run a while: the free ids are a random half of twice the pool
    (the rest held by requests outside the modelled batch), still handed out lowest first.
    ``base`` near ``2**31 / block_size`` places the ids where ``id * block_size`` overflows int32.
    """

    def __init__(self, size: int, rng: np.random.Generator, *, base: int = 0, fragmented: bool = True) -> None:
        if fragmented:
            top = min(base + 2 * size, INT32_MAX + 1)  # block ids are int32
            # Offsets drawn from range(top - base): the same draws and ids as choosing from arange(base, top),
            # without building that array first.
            ids = base + np.sort(rng.choice(top - base, size, replace=False))
        else:
            ids = np.arange(base, base + size, dtype=np.int64)
        # Kept in descending order: its last n, reversed, are exactly what n heappops of the min-heap give. A
        # numpy array, not a list: a long-context table takes thousands of blocks, and a Python int per block
        # was most of what such a state cost to generate.
        self._free: np.ndarray = ids[::-1]
        self.base = base
        self.size = size

    @property
    def free_count(self) -> int:
        return self._free.shape[0]

    def allocate(self, n: int) -> np.ndarray:
        """The ``n`` smallest free ids, ascending (int64)."""
        if n > self.free_count:
            raise PoolExhausted(f"need {n} blocks, {self.free_count} free")
        if n == 0:
            return NO_BLOCKS
        taken = self._free[-n:][::-1]  # a view: no array of block ids is ever written in place
        self._free = self._free[:-n]
        return taken

    def release(self, blocks: np.ndarray) -> None:
        self._free = np.sort(np.concatenate((self._free, np.asarray(blocks, dtype=np.int64))))[::-1]


@dataclass(slots=True)
class Request:
    """One request in one slot: its prompt, what is in its KV cache, and the blocks that hold it.

    ``shared`` leading blocks are prefix-cache blocks also referenced by another request: they are
    full and read-only, so no step ever writes them (one block, one writer).
    """

    rid: int
    prompt_len: int
    cached: int = 0
    blocks: np.ndarray = field(default_factory=lambda: NO_BLOCKS)  # physical ids, int64, never written in place
    shared: int = 0
    hit: int = 0  # tokens served from the prefix cache at admission
    draft: int = 0  # speculative tokens proposed per decode step (MTP depth)
    idle: bool = False  # kept in its slot but not scheduled this step
    max_new: int = 1 << 30
    generated: int = 0

    @property
    def prefilling(self) -> bool:
        return self.cached < self.prompt_len


@dataclass(frozen=True)
class Step:
    """One scheduled step: the state, each slot's phase, and the state-wide tags (scenarios)."""

    state: BatchState
    phases: tuple[str, ...]
    tags: frozenset[str]


class Scheduler:
    """Slots, a pool and a token budget; ``schedule()`` packs one step the way an engine does.

    Prefilling requests take ``min(remaining prompt, budget left)`` tokens (so the budget makes
    chunked prefill); decoding ones take ``1 + draft`` tokens; blocks are allocated on demand for
    what a step writes, plus a random look-ahead the pool can spare, and -1 beyond; a request whose
    blocks the pool cannot give waits unscheduled (idle) for that step.
    """

    def __init__(self, rng: np.random.Generator, *, block_size: int, num_slots: int, budget: int,
                 pool_blocks: int, huge_ids: bool = False, fragmented: bool = True,
                 max_num_seqs: int = MAX_NUM_SEQS) -> None:
        self.rng = rng
        self.block_size = block_size
        self.budget = budget
        self.max_num_seqs = max_num_seqs  # the runner's, which sets the capture list
        self.num_speculative_tokens = 0  # the server's MTP depth, which scales the capture list
        self.buffer_size = budget + MAX_OVERLAP  # the runner's persistent buffers (one size for a whole run)
        base = 0
        if huge_ids:  # straddle the int32 overflow threshold of id * block_size
            base = max(0, min(2**31 // block_size - pool_blocks // 2, INT32_MAX - pool_blocks))
        self.pool = BlockPool(pool_blocks, rng, base=base, fragmented=fragmented)
        self.slots: list[Request | None] = [None] * num_slots
        self._next_rid = 0

    # ---- request lifecycle ----------------------------------------------------------------

    def free_slots(self) -> list[int]:
        return [i for i, r in enumerate(self.slots) if r is None]

    def running(self) -> list[int]:
        return [i for i, r in enumerate(self.slots) if r is not None]

    def admit(self, slot: int, prompt_len: int, *, cached: int = 0, draft: int = 0, hit: bool = False,
              prefix_from: int | None = None, max_new: int = 1 << 30) -> Request:
        """Place a new request in ``slot``; ``cached`` tokens are already in its KV cache.

        With ``prefix_from`` the request's first full blocks are a prefix-cache hit on that slot's
        request (shared blocks, ``cached`` a multiple of the block size); otherwise ``cached``
        tokens (earlier chunks, or with ``hit`` a prefix-cache hit on blocks no other running request
        holds) get blocks of their own.
        """
        bs = self.block_size
        req = Request(self._next_rid, max(prompt_len, cached, 1), cached=cached, blocks=NO_BLOCKS,
                      hit=cached if hit else 0, draft=draft, max_new=max_new)
        self._next_rid += 1
        if prefix_from is not None and self.slots[prefix_from] is not None:
            owner = self.slots[prefix_from]
            full = min(owner.cached // bs, len(owner.blocks), cached // bs)
            req.blocks = owner.blocks[:full]
            req.shared = full
            owner.shared = max(owner.shared, full)
            req.cached = req.hit = full * bs
        need = -(-req.cached // bs) - len(req.blocks)
        if need > 0:
            taken = self.pool.allocate(need)
            req.blocks = np.concatenate((req.blocks, taken)) if req.blocks.size else taken
        self.slots[slot] = req
        return req

    def finish(self, slot: int) -> None:
        """Free a finished (or preempted) request's blocks, except prefix blocks still shared."""
        req = self.slots[slot]
        if req is None:
            return
        shared = [r.blocks[: r.shared] for i, r in enumerate(self.slots) if r is not None and i != slot and r.shared]
        freed = req.blocks[~np.isin(req.blocks, np.concatenate(shared))] if shared else req.blocks
        self.pool.release(freed)
        self.slots[slot] = None

    preempt = finish  # a preempted request loses its cache and its slot; it is re-admitted later

    # ---- one step -------------------------------------------------------------------------

    def schedule(self, *, padding: str = "none", overlap_extra: int = 0, lookahead: int = 0,
                 extra_width: int = 0) -> Step:
        """Pack the running requests into one step's ``BatchState`` (nothing is committed yet).

        The walk over the slots is plain integers (a running budget and a running count of free blocks); the
        blocks it grants are taken from the pool in one slice afterwards, in slot order, which hands each
        request the same ids as one allocation per request would.
        """
        bs = self.block_size
        n = len(self.slots)
        enc = [0] * n
        dec = [0] * n
        this = [0] * n
        phases: list[str] = []
        left = self.budget
        free = self.pool.free_count
        grants: list[tuple[Request, int]] = []
        for i, req in enumerate(self.slots):
            if req is None:
                phases.append("empty")
                continue
            cached = req.cached
            dec[i] = cached
            if req.idle or left == 0:
                phases.append(_unscheduled(req, dec, i))
                continue
            prefilling = cached < req.prompt_len
            if prefilling:
                want = min(req.prompt_len - cached, left)
                if req.hit and cached == req.hit:
                    phase = "prefix_hit"
                elif cached > 0 or want < req.prompt_len:
                    phase = "chunked"
                else:
                    phase = "prefill"
            else:
                want = 1 + req.draft
                if want > left:
                    phases.append("idle")
                    continue
                phase = "mtp" if req.draft else "decode"
            held = len(req.blocks)
            target = -(-(cached + want) // bs)  # blocks the step's writes need
            short = max(0, target - held)
            if short > free:
                # Out of blocks: the request waits unscheduled this step (inferred; an engine preempts or
                # holds it, and the machine's preempt rule frees blocks). Never a table too short for its writes.
                phases.append(_unscheduled(req, dec, i))
                continue
            this[i] = want
            if prefilling:
                enc[i] = want
            phases.append(phase)
            left -= want
            # The look-ahead is a best effort: it takes only what the pool has left after the step's own blocks.
            take = short + max(0, min(target + lookahead - held - short, free - short))
            if take:
                grants.append((req, take))
                free -= take
        if grants:
            granted = self.pool.allocate(sum(take for _, take in grants))
            at = 0
            for req, take in grants:
                got = granted[at:at + take]
                req.blocks = np.concatenate((req.blocks, got)) if req.blocks.size else got
                at += take
        held = [len(r.blocks) if r is not None else 0 for r in self.slots]
        # A server's table has a fixed width of at least one block; never a zero-width table.
        width = max([h for h, r in zip(held, self.slots) if r is not None] + [1]) + extra_width
        tables = np.full((n, width), -1, dtype=np.int32)
        total = sum(held)
        if total:
            # Each row's first ``held`` cells, row after row: a boolean mask visits them in the order the ids are
            # concatenated, one pass over the table instead of two index arrays as long as the ids.
            tables[np.arange(width) < np.asarray(held)[:, None]] = np.concatenate(
                [r.blocks for r in self.slots if r is not None])
        num_tokens = sum(this)
        decode_only = not any(enc)
        padded = pad_tokens(num_tokens, padding, overlap_extra, decode_only=decode_only, max_num_seqs=self.max_num_seqs,
                            num_speculative_tokens=self.num_speculative_tokens)
        state = BatchState.from_dict({
            "seq_lens_encoder": np.asarray(enc, dtype=np.int32), "seq_lens_decoder": np.asarray(dec, dtype=np.int32),
            "seq_lens_this_time": np.asarray(this, dtype=np.int32),
            "block_tables": tables, "block_size": bs, "padded_num_tokens": padded,
            "max_num_batched_tokens": max(self.buffer_size, padded),
        })
        return Step(state, tuple(phases), frozenset(state_tags(state, padding, phases)))

    def commit(self, step: Step, accepted: list[int] | None = None) -> list[int]:
        """Advance every scheduled request by what the step computed; return slots that finished.

        ``accepted[i]`` is how many of a decoding request's ``1 + draft`` tokens were accepted
        (MTP rejection keeps the cache shorter than what was written; the blocks stay allocated).
        """
        done = []
        this = step.state.seq_lens_this_time
        for i, req in enumerate(self.slots):
            if req is None or this[i] == 0:
                continue
            if req.prefilling:
                req.cached += int(this[i])
                if not req.prefilling:
                    req.generated += 1
            else:
                got = int(this[i]) if accepted is None else max(1, min(int(this[i]), accepted[i]))
                req.cached += got
                req.generated += got
            if req.generated >= req.max_new or req.cached + 1 + req.draft > MAX_MODEL_LEN:
                done.append(i)
        for i in done:
            self.finish(i)
        return done


def _unscheduled(req: Request, dec: list[int], i: int) -> str:
    """The phase of a request kept in its slot but not scheduled this step; one with nothing cached is an
    empty slot to the runner (its ``seq_lens_decoder`` is zeroed)."""
    if req.cached == 0:
        dec[i] = 0
    return "idle" if req.cached > 0 or req.prefilling else "empty"


def pad_tokens(num_tokens: int, padding: str, overlap_extra: int, *, decode_only: bool,
               max_num_seqs: int = MAX_NUM_SEQS, num_speculative_tokens: int = 0) -> int:
    """The launch size (``validation.launch_padding``): a capture size, or an overlap prediction that counted
    ``overlap_extra`` requests which have stopped running since; a step that prefills is not padded."""
    return launch_size(num_tokens, padding, decode_only=decode_only, max_num_seqs=max_num_seqs,
                       predicted=num_tokens + overlap_extra, num_speculative_tokens=num_speculative_tokens)


def state_tags(state: BatchState, padding: str, phases: list[str] | tuple[str, ...]) -> set[str]:
    """The scenarios one state exercises (the names ``event()`` records and the fuzz report groups by)."""
    tags = {f"phase:{p}" for p in phases}
    bs = state.block_size
    if state.bsz == 0 or state.num_tokens == 0:
        tags.add("empty_batch")
    if len({p for p in phases if p not in ("empty", "idle")}) >= 3:
        tags.add("mixed_phases")
    if state.padded_num_tokens > state.num_tokens:
        tags.add("padding:capture" if padding == "capture" else "padding:overlap")
    if state.bsz > LAUNCH_LIMIT:
        tags.add("batch:over_launch_limit")
    if bs != 64:
        tags.add("block_size:not_64")
    dec, this = state.seq_lens_decoder.astype(np.int64), state.seq_lens_this_time.astype(np.int64)
    live = this > 0
    if live.any():
        last = dec[live] + this[live] - 1
        if int(last.max()) >= 32_768:
            tags.add("context:long")
        if int(last.max()) >= MAX_MODEL_LEN - 1024:
            tags.add("context:near_max")
        if bs > 1 and bool(((dec[live] // bs) != (last // bs)).any()):
            tags.add("position:crosses_block")
        if bs > 1 and bool((dec[live] % bs == 0).any() & (dec[live] > 0).any()):
            tags.add("position:starts_on_block")
        if "phase:mtp" in tags and bs > 1:
            mtp = live & (state.seq_lens_encoder == 0) & (this > 1)
            if bool(((dec[mtp] // bs) != ((dec[mtp] + this[mtp] - 1) // bs)).any()):
                tags.add("mtp:draft_crosses_block")
    if live.any():
        rows = np.repeat(np.flatnonzero(live), this[live])
        starts = np.repeat(dec[live] - np.cumsum(this[live]) + this[live], this[live])
        positions = starts + np.arange(rows.shape[0])
        ids = state.block_tables[rows, positions // bs].astype(np.int64)
        top = int((ids * bs + positions % bs).max())
        if top > INT32_MAX:
            tags.add("block_id:int32_overflow")
        elif top > 2**30:
            tags.add("block_id:near_overflow")
    return tags
