"""The engine's allocator and scheduler: prefix sharing and refcounts, freeing, preemption, the budget, determinism."""

from __future__ import annotations

import random

import pytest

from evals.engine.allocator import BlockAllocator, BlockTable, OutOfBlocks
from evals.engine.scheduler import Request, Scheduler, Status


def tokens(n: int, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(1000) for _ in range(n)]


# ---- allocator ----------------------------------------------------------------------------------


def test_free_list_hands_out_lowest_ids_and_frees_to_the_back() -> None:
    alloc = BlockAllocator(6, 4)
    a, b = BlockTable(), BlockTable()
    alloc.allocate(a, 9)  # 3 blocks
    alloc.allocate(b, 4)
    assert a.blocks == [0, 1, 2] and b.blocks == [3]
    alloc.free(a)
    assert alloc.num_free == 5 and a.blocks == []
    c = BlockTable()
    alloc.allocate(c, 12)
    assert c.blocks == [4, 5, 0]  # the never-used blocks first, then the freed ones: a fragmented pool


def test_allocate_is_all_or_nothing() -> None:
    alloc = BlockAllocator(2, 4)
    t = BlockTable()
    with pytest.raises(OutOfBlocks):
        alloc.allocate(t, 9)
    assert t.blocks == [] and alloc.num_free == 2


def test_full_prompt_blocks_are_shared_with_refcounts() -> None:
    alloc = BlockAllocator(8, 4)
    prompt = tokens(10)
    a = BlockTable()
    alloc.allocate(a, 10)
    alloc.register_full_blocks(a, prompt, computed=10, hashable=10)  # 2 full blocks published
    b = BlockTable()
    hit = alloc.match_prefix(b, prompt[:8] + [1, 2, 3], hashable=11)
    assert hit == 8 and b.blocks == a.blocks[:2]
    assert [alloc.refcount[x] for x in a.blocks] == [2, 2, 1]
    alloc.free(a)
    assert [alloc.refcount[x] for x in b.blocks] == [1, 1] and alloc.num_free == 8 - 2
    alloc.free(b)
    assert alloc.num_free == 8 and all(r == 0 for r in alloc.refcount)
    c = BlockTable()
    assert alloc.match_prefix(c, prompt, hashable=10) == 0  # freed blocks leave the cache


def test_hash_is_chained_so_a_block_hit_needs_the_same_prefix() -> None:
    alloc = BlockAllocator(8, 4)
    prompt = tokens(8)
    a = BlockTable()
    alloc.allocate(a, 8)
    alloc.register_full_blocks(a, prompt, computed=8, hashable=8)
    other = [9, 9, 9, 9] + prompt[4:8] + [0]  # same second block, different first
    assert alloc.match_prefix(BlockTable(), other, hashable=9) == 0


def test_a_whole_cached_prompt_still_computes_its_last_token() -> None:
    alloc = BlockAllocator(8, 4)
    prompt = tokens(8)
    a = BlockTable()
    alloc.allocate(a, 8)
    alloc.register_full_blocks(a, prompt, computed=8, hashable=8)
    assert alloc.match_prefix(BlockTable(), prompt, hashable=8) == 4


def test_only_computed_prompt_blocks_are_published() -> None:
    alloc = BlockAllocator(8, 4)
    seq = tokens(12)
    a = BlockTable()
    alloc.allocate(a, 12)
    alloc.register_full_blocks(a, seq, computed=6, hashable=12)
    assert alloc.match_prefix(BlockTable(), seq, hashable=12) == 4
    alloc.register_full_blocks(a, seq, computed=12, hashable=8)  # tokens past the prompt are never shared
    assert alloc.match_prefix(BlockTable(), seq, hashable=12) == 8


# ---- scheduler ----------------------------------------------------------------------------------


def make(num_blocks=16, bs=4, seqs=4, budget=16, model_len=1024) -> Scheduler:
    return Scheduler(BlockAllocator(num_blocks, bs), max_num_seqs=seqs, max_num_batched_tokens=budget,
                     max_model_len=model_len)


def run(sched: Scheduler, max_steps: int = 500) -> list:
    """Drive the scheduler with a constant 'sampled' token; return each step's (row, id, n, phase) list."""
    trace = []
    for _ in range(max_steps):
        if not sched.has_unfinished():
            break
        out = sched.schedule()
        assert out.num_tokens <= sched.max_num_batched_tokens
        assert len(out.scheduled) <= sched.max_num_seqs
        trace.append(([(s.row, s.request.request_id, s.num_tokens, s.phase) for s in out.scheduled], out.preempted))
        sched.update(out, {s.request.request_id: 7 for s in out.scheduled if s.samples})
        check_blocks(sched)
    return trace


def check_blocks(sched: Scheduler) -> None:
    """Refcounts equal the number of running tables holding each block; free + held = all."""
    alloc = sched.allocator
    held: dict[int, int] = {}
    for r in sched.running:
        for b in r.table.blocks:
            held[b] = held.get(b, 0) + 1
        assert len(r.table.blocks) * alloc.block_size >= r.num_computed
    assert all(alloc.refcount[b] == n for b, n in held.items())
    assert alloc.num_free + len(held) == alloc.num_blocks


def test_budget_chunks_a_long_prompt_and_decodes_after() -> None:
    sched = make(budget=8)
    sched.add(Request(0, tokens(20), max_tokens=3))
    trace = run(sched)
    assert [step[0][0][2:] for step in trace] == [(8, "chunked"), (8, "chunked"), (4, "chunked"), (1, "decode"),
                                                  (1, "decode")]


def test_requests_keep_their_row_and_rows_are_reused() -> None:
    sched = make(seqs=2, budget=64)
    for i, n in enumerate((5, 9, 3)):
        sched.add(Request(i, tokens(n, i), max_tokens=2 + i))
    trace = run(sched)
    rows = {}
    for step, _ in trace:
        for row, rid, _, _ in step:
            assert rows.setdefault(rid, row) == row
    assert rows == {0: 0, 1: 1, 2: 0}


def test_prefix_hit_reuses_full_blocks_of_a_running_request() -> None:
    sched = make(bs=4, budget=64)
    shared = tokens(10)
    sched.add(Request(0, shared, max_tokens=6))
    out = sched.schedule()
    sched.update(out, {0: 1})
    sched.add(Request(1, shared[:8] + [5, 6, 7], max_tokens=2))
    out = sched.schedule()
    first = {s.request.request_id: s for s in out.scheduled}
    assert first[1].phase == "prefix_hit" and first[1].num_cached == 8 and first[1].num_tokens == 3
    a, b = (r.table.blocks for r in sched.running)
    assert a[:2] == b[:2] and a[2] != b[2]
    assert all(sched.allocator.refcount[x] == 2 for x in a[:2])


def test_preemption_frees_blocks_and_recomputes() -> None:
    sched = make(num_blocks=6, bs=4, budget=32, seqs=3)
    for i in range(3):
        sched.add(Request(i, tokens(7, i), max_tokens=8))
    trace = run(sched)
    preempted = [p for _, p in trace if p]
    assert preempted, "the pool is too small for all three: someone is preempted"
    phases = [ph for step, _ in trace for (_, _, _, ph) in step]
    assert "recompute" in phases
    assert sched.allocator.num_free == 6
    assert all(r == 0 for r in sched.allocator.refcount)


def test_preempted_request_resumes_with_its_generated_tokens() -> None:
    sched = make(num_blocks=6, bs=4, budget=32, seqs=3)
    reqs = [Request(i, tokens(7, i), max_tokens=8) for i in range(3)]
    for r in reqs:
        sched.add(r)
    run(sched)
    assert all(len(r.output) == 8 and r.status is Status.FINISHED and r.finish_reason == "length" for r in reqs)
    assert any(r.num_preemptions for r in reqs)


def test_stop_token_finishes_and_frees() -> None:
    sched = make()
    r = Request(0, tokens(5), max_tokens=50, stop_token_ids=frozenset({7}))
    sched.add(r)
    run(sched)
    assert r.finish_reason == "stop" and r.output == [7] and sched.allocator.num_free == 16


def test_abort_frees_at_once() -> None:
    sched = make()
    r = Request(0, tokens(9), max_tokens=50)
    sched.add(r)
    sched.update(sched.schedule(), {0: 1})
    assert sched.allocator.num_free < 16
    sched.abort(r)
    assert sched.allocator.num_free == 16 and not sched.has_unfinished()


def test_scheduling_is_deterministic() -> None:
    def trace() -> list:
        sched = make(num_blocks=10, bs=4, budget=12, seqs=3)
        for i in range(6):
            sched.add(Request(i, tokens(3 + 4 * i, i % 2), max_tokens=5))
        return run(sched)

    assert trace() == trace()


def test_a_long_prefill_chunk_cap_admits_a_newcomer_at_once() -> None:
    """Without the cap a running long prefill takes every step's whole budget and a request arriving meanwhile
    waits for all of it (issue 19); with ``long_prefill_chunk`` the newcomer is admitted in the next step."""
    def newcomer_first_step(cap: int | None) -> int:
        sched = Scheduler(BlockAllocator(64, 4), max_num_seqs=4, max_num_batched_tokens=16, max_model_len=1024,
                          long_prefill_chunk=cap)
        sched.add(Request(0, tokens(120), max_tokens=1))
        out = sched.schedule()
        sched.update(out, {s.request.request_id: 7 for s in out.scheduled if s.samples})
        sched.add(Request(1, tokens(5, 1), max_tokens=2))
        for step in range(1, 100):
            out = sched.schedule()
            if any(s.request.request_id == 1 for s in out.scheduled):
                assert all(s.num_tokens <= (cap or 16) for s in out.scheduled)
                return step
            sched.update(out, {s.request.request_id: 7 for s in out.scheduled if s.samples})
        raise AssertionError("the newcomer was never scheduled")

    assert newcomer_first_step(None) > 5  # waits for the long prefill's remaining 104 tokens at 16 a step
    assert newcomer_first_step(4) == 1
    off = Scheduler(BlockAllocator(64, 4), max_num_seqs=4, max_num_batched_tokens=16, max_model_len=1024,
                    chunked_prefill=False, long_prefill_chunk=4)
    assert off.chunk_cap == 16  # a whole prefill is what chunked prefill off means: the cap does not apply
