"""Continuous batching: which requests run in the next step, and with how many tokens each.

One step has a token budget (``max_num_batched_tokens``) and at most ``max_num_seqs`` requests, each
in a fixed row of the batch (FastDeploy's slot: a request keeps its row from admission until it
finishes, is aborted or is preempted). Running requests are served first, oldest first: a decoding
request takes one token, a prefilling one the rest of its prompt or what the budget leaves (chunked
prefill: a long prompt is split over steps). When the allocator runs out of blocks, the newest
running request is preempted (recompute: its blocks are freed, it goes back to the head of the
queue and later prefills its prompt and everything it generated again). New requests are admitted,
first come first served, when nothing was preempted in the step, a row is free and the budget has
room; each starts from the cached full blocks its prompt shares with running requests (a prefix
hit). Every choice depends only on lengths and prompt tokens, so a workload always schedules the
same way, whatever tokens the model generates. Design after vLLM v1's and nano-vLLM's schedulers.

``long_prefill_chunk`` (off by default, so the engine's batches stay as they were) caps the tokens one prefilling
request takes in a step, as vLLM's ``long_prefill_token_threshold`` does: running requests are served first, so
without it a long prompt takes the whole budget of every step until it is prefilled, and a request arriving
meanwhile waits for all of it (issue 19: a request sent during a 2,040-token prefill waited the whole 295 s).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum

from evals.engine.allocator import BlockAllocator, BlockTable, OutOfBlocks


class Status(Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass(eq=False)
class Request:
    """One request: its tokens, how many of them are in its cache, and where its cache lives."""

    request_id: int
    prompt: list[int]
    max_tokens: int
    stop_token_ids: frozenset[int] = frozenset()
    output: list[int] = field(default_factory=list)
    num_computed: int = 0  # tokens whose keys and values are in the cache (FastDeploy's seq_lens_decoder)
    prefill_len: int = 0  # tokens to compute before the next sample: the prompt, or prompt + output after preemption
    prefix_hit: int = 0  # tokens served from shared blocks at the latest admission
    row: int | None = None
    table: BlockTable = field(default_factory=BlockTable)
    status: Status = Status.WAITING
    finish_reason: str | None = None
    num_preemptions: int = 0

    @property
    def tokens(self) -> list[int]:
        return self.prompt + self.output

    @property
    def prefilling(self) -> bool:
        return self.num_computed < self.prefill_len

    def to_compute(self) -> int:
        """Tokens not yet in the cache: the rest of the prefill, or the last sampled token."""
        return len(self.prompt) + len(self.output) - self.num_computed


@dataclass(frozen=True)
class Scheduled:
    """One request's share of a step."""

    request: Request
    row: int
    num_tokens: int
    num_cached: int  # tokens already in its cache before this step
    prefilling: bool  # enc > 0 in FastDeploy's terms
    samples: bool  # the step computes its last pending token, so a new token is sampled
    phase: str  # prefill | chunked | prefix_hit | recompute | decode


@dataclass
class SchedulerOutput:
    """One step: the scheduled requests in row order, every occupied row, and who was preempted."""

    scheduled: list[Scheduled]
    occupied: list[tuple[int, Request]]  # (row, request) of every running request, scheduled or idle
    preempted: list[int]  # request ids preempted while scheduling this step
    num_rows: int

    @property
    def num_tokens(self) -> int:
        return sum(s.num_tokens for s in self.scheduled)


class Scheduler:
    """The queue, the running set and the rows; ``schedule()`` then ``update()`` once per step."""

    def __init__(self, allocator: BlockAllocator, *, max_num_seqs: int, max_num_batched_tokens: int,
                 max_model_len: int, chunked_prefill: bool = True, prefix_caching: bool = True,
                 long_prefill_chunk: int | None = None) -> None:
        if max_num_seqs < 1 or max_num_batched_tokens < 1:
            raise ValueError("max_num_seqs and max_num_batched_tokens must be >= 1")
        self.allocator = allocator
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.max_model_len = max_model_len
        # Off, every prefill runs whole in one step and starts from position 0 (no enc > 0 with dec > 0): a
        # batch then never meets the v1 position op's chunked-prefill bug, whose wrong positions depend on
        # the other requests in the batch (SPEC 4, v1), so answers stop depending on arrival order.
        self.chunked_prefill = chunked_prefill
        self.prefix_caching = prefix_caching
        # The most tokens one request prefills in a step (chunked prefill only): room is left for newcomers.
        self.chunk_cap = long_prefill_chunk if chunked_prefill and long_prefill_chunk else max_num_batched_tokens
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []  # admission order: the last is preempted first
        self.rows: list[Request | None] = [None] * max_num_seqs

    def add(self, request: Request) -> None:
        request.prefill_len = len(request.prompt)
        self.waiting.append(request)

    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running)

    # ---- one step -------------------------------------------------------------------------------

    def schedule(self) -> SchedulerOutput:
        budget = self.max_num_batched_tokens
        chosen: dict[int, Scheduled] = {}
        preempted: list[int] = []
        for request in list(self.running):
            if request.status is not Status.RUNNING:
                continue  # preempted earlier in this loop
            if budget == 0:
                break
            n = min(request.to_compute(), budget, self.chunk_cap)
            if not self._reserve(request, n, preempted):
                continue  # the request itself was preempted
            chosen[request.row] = self._share(request, n)  # type: ignore[index]
            budget -= n
        if not preempted:
            budget = self._admit(budget, chosen)
        scheduled = [chosen[row] for row in sorted(chosen)]
        occupied = [(row, r) for row, r in enumerate(self.rows) if r is not None]
        return SchedulerOutput(scheduled, occupied, preempted, self.max_num_seqs)

    def _reserve(self, request: Request, n: int, preempted: list[int]) -> bool:
        """Blocks for ``n`` more tokens of ``request``, preempting the newest running requests as needed."""
        while True:
            try:
                self.allocator.allocate(request.table, request.num_computed + n)
                return True
            except OutOfBlocks:
                victim = self.running[-1]
                self._preempt(victim)
                preempted.append(victim.request_id)
                if victim is request:
                    return False

    def _admit(self, budget: int, chosen: dict[int, Scheduled]) -> int:
        while self.waiting and budget > 0 and None in self.rows:
            request = self.waiting[0]
            tokens = request.tokens
            request.prefix_hit = (self.allocator.match_prefix(request.table, tokens, len(request.prompt))
                                  if self.prefix_caching else 0)
            request.num_computed = request.prefix_hit
            if not self.chunked_prefill and request.to_compute() > budget:
                self.allocator.free(request.table)
                request.num_computed = request.prefix_hit = 0
                break  # waits for a step with room for its whole prefill
            n = min(request.to_compute(), budget, self.chunk_cap)
            try:
                self.allocator.allocate(request.table, request.num_computed + n)
            except OutOfBlocks:
                self.allocator.free(request.table)
                request.num_computed = request.prefix_hit = 0
                break
            self.waiting.popleft()
            request.status = Status.RUNNING
            request.row = self.rows.index(None)
            self.rows[request.row] = request
            self.running.append(request)
            chosen[request.row] = self._share(request, n)
            budget -= n
        return budget

    def _share(self, request: Request, n: int) -> Scheduled:
        cached = request.num_computed
        prefilling = request.prefilling
        if not prefilling:
            phase = "decode"
        elif request.num_preemptions and cached == request.prefix_hit:
            phase = "recompute"
        elif cached and cached == request.prefix_hit:
            phase = "prefix_hit"
        elif cached or n < request.prefill_len:
            phase = "chunked"
        else:
            phase = "prefill"
        samples = cached + n == len(request.prompt) + len(request.output)
        return Scheduled(request, request.row, n, cached, prefilling, samples, phase)  # type: ignore[arg-type]

    def update(self, output: SchedulerOutput, sampled: dict[int, int]) -> list[Request]:
        """Commit a step: advance what each request computed, append sampled tokens (by request id),
        finish requests that hit a stop token, their token limit or the context; return those finished."""
        finished = []
        for share in output.scheduled:
            request = share.request
            if request.status is not Status.RUNNING:
                continue  # aborted while the step ran
            request.num_computed += share.num_tokens
            self.allocator.register_full_blocks(request.table, request.tokens, request.num_computed, len(request.prompt))
            if not share.samples:
                continue
            token = sampled[request.request_id]
            request.output.append(token)
            if token in request.stop_token_ids:
                request.finish_reason = "stop"
            elif len(request.output) >= request.max_tokens or len(request.tokens) >= self.max_model_len:
                request.finish_reason = "length"
            if request.finish_reason is not None:
                self._release(request, Status.FINISHED)
                finished.append(request)
        return finished

    # ---- leaving the running set ----------------------------------------------------------------

    def abort(self, request: Request) -> None:
        if request.status is Status.WAITING:
            self.waiting.remove(request)
            request.status = Status.FINISHED
        elif request.status is Status.RUNNING:
            self._release(request, Status.FINISHED)

    def _preempt(self, request: Request) -> None:
        self._release(request, Status.WAITING)
        request.num_computed = 0
        request.prefill_len = len(request.prompt) + len(request.output)
        request.num_preemptions += 1
        self.waiting.appendleft(request)

    def _release(self, request: Request, status: Status) -> None:
        self.allocator.free(request.table)
        self.running.remove(request)
        self.rows[request.row] = None  # type: ignore[index]
        request.row = None
        request.status = status
