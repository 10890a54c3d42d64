"""The engine facade (LLMEngine-like): add requests, step, abort. Greedy, deterministic, one thread.

Each step the scheduler picks the batch, the runner builds the seam's step inputs and gets the slots
from the slot-mapping implementation under test (``EngineConfig.slot_mapping``: registry name,
``module:NAME`` or ``file.py:NAME``), the model writes every launched row's keys and values at those
slots and reads the context back through the block tables, and the last row of each request that
finished its pending tokens is sampled greedily (argmax, ties to the lowest id). The server calls it
from one engine thread; ``dsa-validate e2e`` runs three engines side by side on one model.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from evals.engine.allocator import BlockAllocator
from evals.engine.model_runner import StepBatch, StepSlots, build_batch, compute_slots, forward
from evals.engine.scheduler import Request, Scheduler, SchedulerOutput, Status
from validation.errors import InputError
from validation.launch_padding import PADDINGS

DEFAULT_CACHE_TOKENS = 8192


class QueueFull(RuntimeError):
    """The engine's waiting queue is full; the server answers 503."""


@dataclass
class EngineConfig:
    """How the engine runs; ``slot_mapping`` names the implementation whose slots the caches are written at."""

    slot_mapping: str = "single_step"
    block_size: int = 64
    padding: str = "none"
    top_k: int | None = None  # None: dense attention (the indexer keeps every cached token)
    num_index_heads: int | None = None  # None: the model's default
    num_blocks: int | None = None  # None: DEFAULT_CACHE_TOKENS worth of blocks
    cache_blocks: int | None = None  # blocks of memory the caches hold (>= num_blocks); past the pool nobody reads
    max_num_seqs: int = 16
    max_num_batched_tokens: int = 256
    max_model_len: int | None = None  # None: the model's context length
    max_waiting: int = 256
    backend: str = "paddle"
    chunked_prefill: bool = True  # off: a prefill runs whole in one step (see Scheduler)
    prefix_caching: bool = True  # off: no request starts from another's cached blocks
    long_prefill_chunk: int | None = None  # None: a prefill takes what the budget leaves (see Scheduler)

    def validate(self) -> None:
        """Raise ``InputError`` naming the first bad field."""
        for name in ("block_size", "max_num_seqs", "max_num_batched_tokens", "max_waiting"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(name, f"must be an integer >= 1, got {value!r}")
        for name in ("top_k", "num_index_heads", "num_blocks", "cache_blocks", "max_model_len", "long_prefill_chunk"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise InputError(name, f"must be an integer >= 1 (or unset), got {value!r}")
        if self.padding not in PADDINGS:
            raise InputError("padding", f"unknown padding {self.padding!r} (choose from: {', '.join(PADDINGS)})")


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int = 16
    stop_token_ids: Sequence[int] = ()
    seed: int | None = None  # accepted for the API; greedy decoding ignores it


@dataclass(frozen=True)
class RequestOutput:
    request_id: int
    new_token_ids: list[int]
    finished: bool
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class PendingStep:
    """A scheduled step whose slots are computed and whose forward has not run yet."""

    output: SchedulerOutput
    batch: StepBatch
    slots: StepSlots


@dataclass
class StepRecord:
    """What the last step did, for ``dsa-validate e2e``: its schedule, inputs, slots and logits."""

    index: int
    output: SchedulerOutput
    batch: StepBatch
    slots: StepSlots
    logits: np.ndarray  # float32 [R, vocab], rows in ``batch.logits_requests`` order
    sampled: dict[int, int] = field(default_factory=dict)


class Engine:
    """Paged, DSA-style engine on the SmolLM2 model; the caches are written through the seam."""

    def __init__(self, config: EngineConfig, *, model: Any = None) -> None:
        from validation.seam import resolve

        config.validate()
        self.config = config
        self.model = model if model is not None else load_model(config)
        self.num_layers = int(self.model.config.num_layers)
        context = int(self.model.config.max_position_embeddings)
        self.max_model_len = min(config.max_model_len or context, context)
        bs = config.block_size
        num_blocks = config.num_blocks or -(-DEFAULT_CACHE_TOKENS // bs)
        self.allocator = BlockAllocator(num_blocks, bs)
        self.scheduler = Scheduler(self.allocator, max_num_seqs=config.max_num_seqs,
                                   max_num_batched_tokens=config.max_num_batched_tokens,
                                   max_model_len=self.max_model_len, chunked_prefill=config.chunked_prefill,
                                   prefix_caching=config.prefix_caching,
                                   long_prefill_chunk=config.long_prefill_chunk)
        self.max_blocks = -(-self.max_model_len // bs)
        self.cache_slots = max(num_blocks, config.cache_blocks or 0) * bs
        self.caches = self.model.new_caches(num_blocks=self.cache_slots // bs, block_size=bs)
        impl = resolve(config.slot_mapping, backend=config.backend, num_layers=self.num_layers,
                       field_name="slot_mapping")
        self._slot_fn = impl.new()  # one instance per engine: persistent buffers live across steps
        self._requests: dict[int, Request] = {}
        self._ids = itertools.count()
        self._steps = 0
        self._predicted = -1  # the overlap schedule's launch prediction for the next step (-1: none)
        self.last_record: StepRecord | None = None
        if config.padding != "none":
            self._start_up()

    def _start_up(self) -> None:
        """What a server runs before serving (``validation.start_up``: profile_run's dummy run, and under
        ``capture`` the CUDA-graph warm-up), through the slot mapping only: it leaves the persistent buffers as
        the first served step meets them. The dummy runs' cache writes are not modelled: FastDeploy clears the
        cache after profiling, and the warm-up writes only blocks no request has been given yet. The engine's
        block tables hold only its requests' rows (-1 elsewhere), as after ``FD_DETERMINISTIC_MODE``'s reset
        (``gpu_worker.py@2d8338f9e4e6:250-255``); the slot buffers keep what the start-up wrote. Without
        padding no served row reads the buffers' tails, so an unpadded engine skips it."""
        from validation.seam import observe
        from validation.start_up import start_up_steps

        cfg = self.config
        for state in start_up_steps([None] * cfg.max_num_seqs, block_size=cfg.block_size,
                                    budget=cfg.max_num_batched_tokens,
                                    buffer_size=max(cfg.max_num_batched_tokens, cfg.max_num_seqs),
                                    capture=cfg.padding == "capture"):
            observe(self._slot_fn, state.step_inputs(), self.num_layers)

    # ---- the facade --------------------------------------------------------------------------------

    def add_request(self, prompt_token_ids: Sequence[int], params: SamplingParams | None = None) -> int:
        params = params or SamplingParams()
        prompt = [int(t) for t in prompt_token_ids]
        if not prompt:
            raise ValueError("the prompt is empty")
        if params.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {params.max_tokens}")
        if len(prompt) >= self.max_model_len:
            raise ValueError(f"the prompt has {len(prompt)} tokens; the model's context is {self.max_model_len}")
        capacity = self.allocator.num_blocks * self.allocator.block_size
        if len(prompt) + params.max_tokens > capacity:
            raise ValueError(f"prompt ({len(prompt)}) + max_tokens ({params.max_tokens}) exceeds the KV cache "
                             f"({capacity} tokens)")
        if not self.config.chunked_prefill and len(prompt) + params.max_tokens > self.config.max_num_batched_tokens:
            raise ValueError(f"prompt ({len(prompt)}) + max_tokens ({params.max_tokens}) exceeds max_num_batched_tokens "
                             f"({self.config.max_num_batched_tokens}), which must hold a whole prefill (or a recompute) "
                             "when chunked prefill is off")
        if len(self.scheduler.waiting) >= self.config.max_waiting:
            raise QueueFull(f"{len(self.scheduler.waiting)} requests are waiting")
        request = Request(next(self._ids), prompt, params.max_tokens, frozenset(int(t) for t in params.stop_token_ids))
        self._requests[request.request_id] = request
        self.scheduler.add(request)
        return request.request_id

    def step(self) -> list[RequestOutput]:
        """One scheduler step; raises ``SlotMappingFailure`` when the implementation under test fails."""
        pending = self.prepare_step()
        if pending is None:
            return []
        return self.complete_step(pending, forward(self.model, self.caches, pending.batch, pending.slots))

    def prepare_step(self) -> PendingStep | None:
        """Schedule the next step and compute its slots (``step()`` in two halves, so that ``dsa-validate e2e``
        can run the forward itself); None when nothing is scheduled."""
        output = self.scheduler.schedule()
        if not output.scheduled:
            return None
        batch = build_batch(output, block_size=self.config.block_size, max_blocks=self.max_blocks,
                            padding=self.config.padding, max_num_batched_tokens=self.config.max_num_batched_tokens,
                            max_num_seqs=self.config.max_num_seqs, predicted=self._predicted)
        return PendingStep(output, batch, compute_slots(self._slot_fn, batch, self.num_layers))

    def complete_step(self, pending: PendingStep, logits: np.ndarray) -> list[RequestOutput]:
        """Sample from the step's logits and commit it."""
        output, batch = pending.output, pending.batch
        sampled = {}
        for share in output.scheduled:
            if share.samples:
                row = batch.logits_requests.index(share.request.request_id)
                sampled[share.request.request_id] = int(np.argmax(logits[row]))
        self.last_record = StepRecord(self._steps, output, batch, pending.slots, logits, sampled)
        self._steps += 1
        # The next step's overlap prediction: the requests that ran this one, unless it prefilled
        # (gpu_model_runner.py@2d8338f9e4e6:340-356; no block-step requests in this engine).
        self._predicted = -1 if any(s.prefilling for s in output.scheduled) else len(output.scheduled)
        finished = {r.request_id for r in self.scheduler.update(output, sampled)}
        outs = []
        for rid, token in sampled.items():
            request = self._requests[rid]
            done = rid in finished
            outs.append(RequestOutput(rid, [token], done, request.finish_reason if done else None,
                                      len(request.prompt), len(request.output)))
            if done:
                del self._requests[rid]
        return outs

    def abort(self, request_id: int) -> None:
        """Drop a request now (client gone): its blocks are freed at once. Unknown ids are ignored."""
        request = self._requests.pop(request_id, None)
        if request is not None and request.status is not Status.FINISHED:
            self.scheduler.abort(request)
            request.finish_reason = "abort"

    def has_unfinished(self) -> bool:
        return self.scheduler.has_unfinished()

    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams | None = None) -> list[list[int]]:
        """Run ``prompts`` to completion; the generated token ids of each, in order."""
        ids = [self.add_request(p, params) for p in prompts]
        out: dict[int, list[int]] = {i: [] for i in ids}
        while self.has_unfinished():
            for o in self.step():
                out[o.request_id].extend(o.new_token_ids)
        return [out[i] for i in ids]


def load_model(config: EngineConfig) -> Any:
    """The SmolLM2 model from the bundled GGUF (weights cached per process)."""
    from evals.engine.model import DSAModel
    from evals.engine.weights import load_model_weights

    kwargs: dict[str, Any] = {}
    if config.num_index_heads is not None:
        kwargs["num_index_heads"] = config.num_index_heads
    return DSAModel(load_model_weights(), top_k=config.top_k or (1 << 30), **kwargs)
