"""The ``e2e`` run loop: three engines in lockstep (oracle, baseline, candidate), triaged and compared per step.

Per step it triages the two sides' positions and slots with the core's rules (``validation.compare``), compares
every request's logits bit for bit, and follows each side's wrong cache entries (``evals.e2e.taint``) so each
divergence is explained by its cause.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from evals.e2e.e2e_options import (LEGACY_INDEXER_BLOCK, MAX_NUM_BATCHED_TOKENS, MAX_NUM_SEQS, POOL_TOKENS,
                                   E2EOptions, check_options)
from evals.e2e.e2e_result import E2EResult
from validation.verdicts import Verdict


@dataclass
class Side:
    """One of the three runs."""

    role: str  # oracle | baseline | candidate
    engine: Any
    tokens: dict[int, list[int]] = field(default_factory=dict)
    failure: tuple[int, str] | None = None
    taint: Any = None
    equal_rows: Counter = field(default_factory=Counter)  # phase -> logits rows equal to the oracle's
    unexplained: list[tuple[int, int]] = field(default_factory=list)  # (step, request) untainted yet different


def run_e2e(options: E2EOptions, *, model: Any = None, tokenizer: Any = None,
            progress: Callable[[str], None] | None = None) -> E2EResult:
    """Run the workload three times in lockstep and triage every step."""
    from evals.e2e import workload
    from evals.engine.engine import Engine, EngineConfig, SamplingParams
    from evals.e2e.lockstep import Lockstep
    from evals.e2e.taint import TaintTracker

    check_options(options)
    started = time.perf_counter()
    if tokenizer is None:
        from evals.engine.tokenizer import load_tokenizer

        tokenizer = load_tokenizer()
    if model is None:
        from evals.engine.model import DSAModel
        from evals.engine.weights import load_model_weights

        model = DSAModel(load_model_weights(), top_k=options.top_k)
    items = workload.build(tokenizer, options.requests)
    bs = options.block_size
    num_blocks = -(-POOL_TOKENS // bs)
    # The legacy indexer addresses the cache in 64-token blocks; give it the memory so that it writes the
    # wrong entries (which the model then reads) instead of faulting at once. Nothing reads past the pool.
    cache_blocks = num_blocks * max(1, -(-LEGACY_INDEXER_BLOCK // bs))

    def engine(spec: str) -> Any:
        return Engine(EngineConfig(slot_mapping=spec, block_size=bs, padding=options.padding, top_k=options.top_k,
                                   num_blocks=num_blocks, cache_blocks=cache_blocks, max_num_seqs=MAX_NUM_SEQS,
                                   max_num_batched_tokens=MAX_NUM_BATCHED_TOKENS, backend=options.backend), model=model)

    sides = [Side("oracle", engine("oracle")), Side("baseline", engine(options.baseline)),
             Side("candidate", engine(options.candidate))]
    oracle, base, cand = sides
    lockstep = Lockstep([side.engine for side in sides], share=not options.independent)
    num_layers = oracle.engine.num_layers
    for side in (base, cand):
        side.taint = TaintTracker(num_layers, oracle.engine.cache_slots, bs)
    result = E2EResult(options, cache_slots=oracle.engine.cache_slots, pool_slots=num_blocks * bs)
    pending = list(items)
    step = 0
    regressed = False
    while pending or oracle.engine.has_unfinished():
        while pending and (pending[0].arrival <= step or not oracle.engine.has_unfinished()):
            item = pending.pop(0)
            for side in sides:
                rid = side.engine.add_request(list(item.prompt_ids), SamplingParams(max_tokens=item.max_tokens))
                side.tokens[rid] = []
        for side, failure in zip(sides, lockstep.step()):
            if failure is not None:
                side.failure = (step, str(failure))
        if oracle.failure:
            raise RuntimeError(f"the oracle's run failed at step {step}: {oracle.failure[1]}")
        if base.failure or cand.failure:
            _record_failures(result, base, cand)
            break
        records = [side.engine.last_record for side in sides]
        regressed |= _compare_step(result, step, records, sides, num_layers, regressed)
        for side, record in zip(sides, records):
            for rid, token in record.sampled.items():
                side.tokens[rid].append(token)
        step += 1
        if progress and step % 50 == 0:
            progress(f"e2e: step {step}, {lockstep.forwards} forwards, {time.perf_counter() - started:.0f} s")
    result.steps = step
    result.requests = _text_effects(sides, tokenizer, regressed)
    for side in (base, cand):
        result.taint[side.role] = {rid: {"step": side.taint.first_taint_step[rid], "cause": cause}
                                   for rid, cause in side.taint.tainted.items()}
        result.equal_rows[side.role] = dict(side.equal_rows)
        result.unexplained[side.role] = side.unexplained
    result.forwards = lockstep.forwards
    result.seconds = time.perf_counter() - started
    return result


def _record_failures(result: E2EResult, base: Side, cand: Side) -> None:
    from validation.compare import classify

    for side in (base, cand):
        if side.failure:
            result.failures[side.role] = side.failure
    same = bool(base.failure and cand.failure
                and base.failure[1].split(":")[0] == cand.failure[1].split(":")[0])
    result.failure_verdict = classify(base.failure is None, cand.failure is None, same)


def _compare_step(result: E2EResult, step: int, records: list[Any], sides: list[Side], num_layers: int,
                  regressed: bool) -> bool:
    """Triage one step; return whether it showed a REGRESSION in the slots."""
    from validation.compare import classify, triage
    from validation.oracle import truth

    rec_o, rec_b, rec_c = records
    signature = [(s.row, s.request.request_id, s.num_tokens) for s in rec_o.output.scheduled]
    for rec in (rec_b, rec_c):
        if [(s.row, s.request.request_id, s.num_tokens) for s in rec.output.scheduled] != signature:
            raise RuntimeError(f"step {step}: the runs scheduled differently; the e2e comparison needs one schedule")
    inputs = rec_o.batch.inputs
    state = rec_o.batch.state
    expected = truth(state)
    report = triage(state, rec_b.slots.observation, rec_c.slots.observation, "baseline", "candidate", num_layers,
                    expected=expected, max_per_group=8)
    result.slot_counts.update(report.counts)
    for verdict in list(Verdict)[:3]:
        if verdict not in result.slot_first and report.counts[verdict]:
            result.slot_first[verdict] = _slot_findings(step, report, verdict, rec_o, state)
    regression_now = bool(report.counts[Verdict.REGRESSION])
    # Bookkeeping of the workload.
    phases = {s.request.request_id: s.phase for s in rec_o.output.scheduled}
    result.phases.update(phases.values())
    result.preemptions += len(rec_o.output.preempted)
    result.real_tokens += rec_o.batch.num_tokens
    result.padded_rows += rec_o.batch.padded_num_tokens - rec_o.batch.num_tokens
    # Causes, per side.
    truth_pos = np.asarray(expected.positions, dtype=np.int64)
    truth_slots = np.asarray(expected.slots[: expected.num_tokens], dtype=np.int64)
    for side, rec in zip(sides[1:], records[1:]):
        side.taint.step(step, inputs["block_tables"], rec_o.batch.token_request, rec_o.batch.token_context,
                        rec_o.batch.row_requests, truth_pos, truth_slots, rec.slots.positions, rec.slots.layer_slots)
    # Logits, bit for bit.
    for j, rid in enumerate(rec_o.batch.logits_requests):
        lo, lb, lc = rec_o.logits[j], rec_b.logits[j], rec_c.logits[j]
        b_ok, c_ok, equal = _same(lb, lo), _same(lc, lo), _same(lb, lc)
        verdict = classify(b_ok, c_ok, equal)
        if verdict == Verdict.REGRESSION and not b_ok and not (regressed or regression_now):
            verdict = Verdict.SHARED_BUG  # both wrong and different, with no regression in the slots: the baseline's own bug
        result.logits_counts[verdict] += 1
        result.rows_total[phases[rid]] += 1
        result.baseline_vs_candidate_equal_rows += equal
        for side, ok in ((sides[1], b_ok), (sides[2], c_ok)):
            if ok:
                side.equal_rows[phases[rid]] += 1
            elif rid not in side.taint.tainted:
                side.unexplained.append((step, rid))
        if verdict != Verdict.OK and result.logits_first is None:
            result.logits_first = {"step": step, "request": rid, "phase": phases[rid], "verdict": verdict,
                                   "baseline_delta": float(np.max(np.abs(lb - lo))),
                                   "candidate_delta": float(np.max(np.abs(lc - lo)))}
    return regression_now


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _slot_findings(step: int, report: Any, verdict: str, rec: Any, state: Any) -> dict[str, Any]:
    """The first findings of one verdict at a step, with request ids and the cache entry each wrong slot hit."""
    rows = rec.batch.row_requests
    out_lines, details = [], []
    chosen, per_consumer = [], Counter()
    for f in report.findings:  # at most two of each kind, slots first: they carry the overwritten entry
        if f.verdict == verdict and per_consumer[f.consumer] < 2:
            per_consumer[f.consumer] += 1
            chosen.append(f)
    order = {"attention": 0, "indexer": 1, "position_ids": 2}
    for f in sorted(chosen, key=lambda f: order.get(f.consumer, 3)):
        where = f.consumer
        if f.layers:
            where += " all layers" if len(f.layers) == report.num_layers else f" layers {f.layers[0]}-{f.layers[-1]}"
        if f.token is not None:
            who = "padding" if f.request is None else f"request {rows.get(f.request)} row {f.request}, position {f.position}"
            where += f" token {f.token} ({who})"
        line = f"{verdict} {where}: baseline={f.baseline} candidate={f.candidate} oracle={f.oracle}"
        hit = {}
        if f.consumer in ("indexer", "attention"):
            for role, value in (("baseline", f.baseline), ("candidate", f.candidate)):
                if isinstance(value, int) and value != f.oracle and value >= 0:
                    hit[role] = owner_of(value, state, rows, rec)
            if hit:
                line += "; " + "; ".join(f"{role}'s slot {v} held {hit[role]}" for role, v in
                                         (("baseline", f.baseline), ("candidate", f.candidate)) if role in hit)
        out_lines.append(line)
        details.append({**f.to_dict(), "request_id": rows.get(f.request) if f.request is not None else None,
                        "overwrote": hit})
    return {"step": step, "lines": out_lines, "findings": details}


def owner_of(slot: int, state: Any, rows: dict[int, int], rec: Any) -> str:
    """Whose cache entry ``slot`` is at this step (read from the block tables, as the kernels read it)."""
    bs = state.block_size
    block, offset = divmod(slot, bs)
    holders = np.argwhere(state.block_tables == block)
    if holders.size == 0:
        if block >= -(-POOL_TOKENS // bs):
            return "memory past the block pool (nobody's entry)"
        return f"block {block}, free (no live entry)"
    parts = []
    for b, logical in holders:
        pos = int(logical) * bs + offset
        dec, this = int(state.seq_lens_decoder[b]), int(state.seq_lens_this_time[b])
        status = "a live entry" if pos < dec else "written this step" if pos < dec + this else "not yet written"
        parts.append(f"request {rows.get(int(b))} position {pos} ({status})")
    return " and ".join(parts)


def _text_effects(sides: list[Side], tokenizer: Any, regressed: bool) -> list[dict[str, Any]]:
    """Per request: the verdict on its generated tokens and the first differing token, decoded."""
    from validation.compare import classify

    oracle, base, cand = sides
    out = []
    for rid, want in oracle.tokens.items():
        got_b, got_c = base.tokens.get(rid, []), cand.tokens.get(rid, [])
        b_ok, c_ok, equal = got_b == want, got_c == want, got_b == got_c
        verdict = classify(b_ok, c_ok, equal)
        if verdict == Verdict.REGRESSION and not b_ok and not regressed:
            verdict = Verdict.SHARED_BUG
        index = next((i for i in range(max(len(want), len(got_b), len(got_c)))
                      if len({tuple(x[i:i + 1]) for x in (want, got_b, got_c)}) > 1), None)

        def tok(ids: list[int]) -> str:
            return tokenizer.decode(ids[index:index + 1]) if index is not None and index < len(ids) else ""

        out.append({
            "request": rid, "verdict": verdict, "baseline_equal": b_ok, "candidate_equal": c_ok, "index": index,
            "oracle_token": tok(want), "baseline_token": tok(got_b), "candidate_token": tok(got_c),
            "oracle_text": tokenizer.decode(want), "baseline_text": tokenizer.decode(got_b),
            "candidate_text": tokenizer.decode(got_c),
        })
    return out
