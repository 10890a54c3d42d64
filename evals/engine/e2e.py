"""``dsa-validate e2e``: judge a slot-mapping implementation by what it does to a real model's logits and text.

One deterministic workload (``evals.engine.workload``) runs three times in lockstep on one loaded model:
with the baseline's slots, the candidate's, and the oracle's (the truth). All three schedule identically
(every request generates exactly ``max_tokens``), so step ``s`` of one run is step ``s`` of the others.
Per step it triages the two sides' positions and slots with the core's rules (``validation.compare``:
REGRESSION / FIX / SHARED-BUG / OK, every layer and consumer), compares every request's logits bit for
bit, and follows each side's wrong cache entries (``evals.engine.taint``) so each divergence is
explained by its cause. The report names the first divergence (step, request, layer, consumer, the slot
written and the cache entry it overwrote) and the effect on each affected request's text.

Exit status: 1 on a REGRESSION, 2 on bad input, 0 otherwise. An implementation that raises, returns
something unusable or writes past the cache is a finding against its side, not a crash.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from validation.errors import InputError

DEFAULT_BASELINE = "legacy"
DEFAULT_CANDIDATE = "single_step"
DEFAULT_TOP_K = 32
POOL_TOKENS = 320  # the block pool: small, so the workload preempts
MAX_NUM_SEQS = 4
MAX_NUM_BATCHED_TOKENS = 64
LEGACY_INDEXER_BLOCK = 64  # the legacy indexer addresses the cache with 64-token blocks whatever the config
MAX_BLOCK_SIZE = 256
VERDICTS = ("REGRESSION", "SHARED-BUG", "FIX", "OK")
SCHEDULE_FIELDS = ("seq_lens_encoder", "seq_lens_decoder", "seq_lens_this_time", "block_tables", "block_size",
                   "padded_num_tokens", "max_num_batched_tokens")


@dataclass(frozen=True)
class E2EOptions:
    baseline: str = DEFAULT_BASELINE
    candidate: str = DEFAULT_CANDIDATE
    block_size: int = 64
    padding: str = "none"
    top_k: int = DEFAULT_TOP_K
    requests: int | None = None  # the first N requests of the workload (default: all)
    backend: str = "paddle"
    independent: bool = False  # run every forward on its own (no sharing of identical work between the runs)


# ---- the command ------------------------------------------------------------------------------------


def register(subparsers: Any) -> None:
    from evals.engine.runner import PADDINGS
    from evals.engine.workload import PLAN

    cmd = subparsers.add_parser(
        "e2e", help="run a small real model with baseline, candidate and oracle slots; compare logits and text",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__.split("\n\n")[1],
        epilog="exit status: 0 no regression, 1 a REGRESSION, 2 bad input\n"
        "examples:\n  dsa-validate e2e\n  dsa-validate e2e --candidate chunked_fix\n"
        "  dsa-validate e2e --block-size 16 --top-k 8\n  dsa-validate e2e --padding capture --json e2e.json\n"
        "  dsa-validate e2e --baseline oracle --candidate path/to/mine.py:MySlots")
    cmd.add_argument("--baseline", default=DEFAULT_BASELINE, help=f"reference side (default: {DEFAULT_BASELINE})")
    cmd.add_argument("--candidate", default=DEFAULT_CANDIDATE, help=f"side under test (default: {DEFAULT_CANDIDATE})")
    cmd.add_argument("--block-size", type=int, default=64, help="KV cache block size (default: 64)")
    cmd.add_argument("--padding", choices=PADDINGS, default="none",
                     help="launch padding: none, capture (CUDA-graph sizes), overlap (estimate above the count)")
    cmd.add_argument("--top-k", type=int, default=DEFAULT_TOP_K,
                     help=f"tokens the indexer keeps per query (default: {DEFAULT_TOP_K}; large = dense)")
    cmd.add_argument("--requests", type=int, default=None, help=f"the first N requests of the workload (1-{len(PLAN)})")
    cmd.add_argument("--backend", choices=("paddle", "cuda"), default="paddle", help="backend of the built-in paths")
    cmd.add_argument("--independent", action="store_true",
                     help="compute all three runs in full (default: runs that are identical so far share a forward)")
    cmd.add_argument("--json", type=Path, metavar="FILE", help="also write the machine-readable report here")
    cmd.set_defaults(func=_command)


def _command(args: argparse.Namespace) -> int:
    # Paddle's CPU build runs one thread unless told otherwise before it is imported.
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, str(os.cpu_count() or 1))
    options = E2EOptions(args.baseline, args.candidate, args.block_size, args.padding, args.top_k, args.requests,
                         args.backend, args.independent)
    result = run_e2e(options, progress=lambda line: print(line, file=sys.stderr, flush=True))
    if args.json:
        tmp = args.json.with_name(args.json.name + ".tmp")
        tmp.write_text(json.dumps(result.to_dict(), indent=1) + "\n", encoding="utf-8")
        tmp.replace(args.json)
    print(result.render())
    return result.exit_code


def check_options(options: E2EOptions) -> None:
    """Bad input is one ``InputError`` naming the option."""
    from evals.engine.runner import PADDINGS
    from evals.engine.workload import PLAN
    from validation.seam import resolve

    if not 1 <= options.block_size <= MAX_BLOCK_SIZE:
        raise InputError("--block-size", f"must be in 1..{MAX_BLOCK_SIZE}, got {options.block_size}")
    if options.top_k < 1:
        raise InputError("--top-k", f"must be >= 1, got {options.top_k}")
    if options.requests is not None and not 1 <= options.requests <= len(PLAN):
        raise InputError("--requests", f"must be in 1..{len(PLAN)}, got {options.requests}")
    if options.padding not in PADDINGS:
        raise InputError("--padding", f"must be one of {', '.join(PADDINGS)}, got {options.padding!r}")
    resolve(options.baseline, backend=options.backend, field_name="--baseline")
    resolve(options.candidate, backend=options.backend, field_name="--candidate")


# ---- the run ----------------------------------------------------------------------------------------


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


@dataclass
class E2EResult:
    options: E2EOptions
    steps: int = 0
    seconds: float = 0.0
    phases: Counter = field(default_factory=Counter)  # phase -> request-steps
    preemptions: int = 0
    padded_rows: int = 0
    real_tokens: int = 0
    slot_counts: Counter = field(default_factory=Counter)  # verdict -> elements (core triage)
    slot_first: dict[str, dict[str, Any]] = field(default_factory=dict)  # verdict -> first step's findings
    logits_counts: Counter = field(default_factory=Counter)  # verdict -> logits rows
    logits_first: dict[str, Any] | None = None
    rows_total: Counter = field(default_factory=Counter)  # phase -> logits rows
    failures: dict[str, tuple[int, str]] = field(default_factory=dict)
    failure_verdict: str | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)  # per request: text effect
    taint: dict[str, dict[str, Any]] = field(default_factory=dict)
    equal_rows: dict[str, dict[str, int]] = field(default_factory=dict)
    unexplained: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    baseline_vs_candidate_equal_rows: int = 0
    cache_slots: int = 0
    pool_slots: int = 0
    forwards: int = 0

    @property
    def verdicts(self) -> list[str]:
        """Every non-OK verdict found (slots, logits, text or a failure), worst first; ``["OK"]`` if none."""
        return [v for v in VERDICTS[:3] if self._count(v)] or ["OK"]

    @property
    def verdict(self) -> str:
        return self.verdicts[0]

    def _count(self, verdict: str) -> int:
        return (self.slot_counts[verdict] + self.logits_counts[verdict]
                + sum(r["verdict"] == verdict for r in self.requests) + (self.failure_verdict == verdict))

    @property
    def exit_code(self) -> int:
        return 1 if self.verdict == "REGRESSION" else 0

    # ---- output ---------------------------------------------------------------------------------------

    def render(self) -> str:
        o = self.options
        rows = sum(self.rows_total.values())
        lines = [
            f"e2e {o.baseline} vs {o.candidate} against the oracle: {' + '.join(self.verdicts)} (block size {o.block_size}, "
            f"padding {o.padding}, top_k {o.top_k}; {self.steps} steps, {len(self.requests)} requests, "
            f"{rows} logits rows; {self.forwards} forwards for 3 runs, {self.seconds:.1f} s)",
            "  workload: " + ", ".join(f"{k} {v}" for k, v in sorted(self.phases.items()))
            + f" (request-steps); {self.preemptions} preemptions; {self.real_tokens} tokens, {self.padded_rows} "
            f"padding rows; cache {self.cache_slots} slots, pool {self.pool_slots}",
            "  slots (core triage, elements): " + _counts(self.slot_counts),
            "  logits rows (bit for bit):     " + _counts(self.logits_counts)
            + f"; baseline == candidate on {self.baseline_vs_candidate_equal_rows}/{rows}",
        ]
        for role, (step, message) in self.failures.items():
            lines.append(f"  {role} failed at step {step}: {message} ({self.failure_verdict}); "
                         "nothing after it is compared")
        for verdict in VERDICTS[:3]:
            first = self.slot_first.get(verdict)
            if not first:
                continue
            lines.append(f"first {verdict} in the slots: step {first['step']}")
            lines.extend("  " + f for f in first["lines"])
        if self.logits_first:
            f = self.logits_first
            lines.append(f"first logits divergence: step {f['step']}, request {f['request']} ({f['phase']}): "
                         f"{f['verdict']} (max |baseline - oracle| {f['baseline_delta']:.4g}, "
                         f"max |candidate - oracle| {f['candidate_delta']:.4g})")
        lines.append("causes (each side against the oracle; requests that read a wrong entry or had a wrong position):")
        for role in ("baseline", "candidate"):
            t = self.taint.get(role, {})
            eq = self.equal_rows.get(role, {})
            total = sum(self.rows_total.values())
            lines.append(f"  {role} {getattr(o, role)}: {sum(eq.values())}/{total} logits rows equal the oracle's "
                         f"({', '.join(f'{k} {eq.get(k, 0)}/{v}' for k, v in sorted(self.rows_total.items()))}); "
                         f"{len(t)} requests tainted")
            for rid, info in list(t.items())[:6]:
                lines.append(f"    request {rid} from step {info['step']}: {info['cause']}")
            if len(t) > 6:
                lines.append(f"    ... and {len(t) - 6} more")
            if self.unexplained.get(role):
                step, rid = self.unexplained[role][0]
                lines.append(f"  WARNING {role}: {len(self.unexplained[role])} logits rows differ from the oracle's "
                             f"without a wrong slot or position behind them (first: step {step}, request {rid})")
        lines.append("text (each request's generated tokens against the oracle's):")
        differing = [r for r in self.requests if r["verdict"] != "OK" or not r["baseline_equal"]]
        lines.append(f"  {len(self.requests) - len(differing)} of {len(self.requests)} requests identical on all three")
        for r in differing:
            lines.append(f"  request {r['request']} {r['verdict']}: first differing token #{r['index']}: "
                         f"oracle {r['oracle_token']!r}, baseline {r['baseline_token']!r}, "
                         f"candidate {r['candidate_token']!r}")
            for role in ("oracle", "baseline", "candidate"):
                lines.append(f"    {role:<9} {r[role + '_text']!r}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "options": self.options.__dict__,
            "verdict": self.verdict,
            "verdicts": self.verdicts,
            "exit_code": self.exit_code,
            "steps": self.steps,
            "seconds": round(self.seconds, 3),
            "forwards": self.forwards,
            "phases": dict(self.phases),
            "preemptions": self.preemptions,
            "real_tokens": self.real_tokens,
            "padded_rows": self.padded_rows,
            "cache_slots": self.cache_slots,
            "pool_slots": self.pool_slots,
            "slot_counts": {v: self.slot_counts[v] for v in VERDICTS},
            "slot_first": self.slot_first,
            "logits_counts": {v: self.logits_counts[v] for v in VERDICTS},
            "logits_first": self.logits_first,
            "logits_rows": dict(self.rows_total),
            "baseline_vs_candidate_equal_rows": self.baseline_vs_candidate_equal_rows,
            "equal_rows": self.equal_rows,
            "failures": {k: {"step": s, "message": m} for k, (s, m) in self.failures.items()},
            "failure_verdict": self.failure_verdict,
            "taint": {role: {str(k): v for k, v in t.items()} for role, t in self.taint.items()},
            "unexplained": {k: [list(x) for x in v] for k, v in self.unexplained.items()},
            "requests": self.requests,
        }


def _counts(counts: Counter) -> str:
    return ", ".join(f"{counts[v]} {v}" for v in VERDICTS)


def run_e2e(options: E2EOptions, *, model: Any = None, tokenizer: Any = None,
            progress: Callable[[str], None] | None = None) -> E2EResult:
    """Run the workload three times in lockstep and triage every step."""
    from evals.engine import workload
    from evals.engine.engine import Engine, EngineConfig, SamplingParams
    from evals.engine.lockstep import Lockstep
    from evals.engine.taint import TaintTracker

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
    from validation.state import BatchState

    rec_o, rec_b, rec_c = records
    signature = [(s.row, s.request.request_id, s.num_tokens) for s in rec_o.output.scheduled]
    for rec in (rec_b, rec_c):
        if [(s.row, s.request.request_id, s.num_tokens) for s in rec.output.scheduled] != signature:
            raise RuntimeError(f"step {step}: the runs scheduled differently; the e2e comparison needs one schedule")
    inputs = rec_o.batch.inputs
    state = BatchState.from_dict({k: inputs[k] for k in SCHEDULE_FIELDS})  # the engine's state obeys the rules
    expected = truth(state)
    report = triage(state, rec_b.slots.observation, rec_c.slots.observation, "baseline", "candidate", num_layers,
                    expected=expected, max_per_group=8)
    result.slot_counts.update(report.counts)
    for verdict in VERDICTS[:3]:
        if verdict not in result.slot_first and report.counts[verdict]:
            result.slot_first[verdict] = _slot_findings(step, report, verdict, rec_o, state)
    regression_now = bool(report.counts["REGRESSION"])
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
        if verdict == "REGRESSION" and not b_ok and not (regressed or regression_now):
            verdict = "SHARED-BUG"  # both wrong and different, with no regression in the slots: the baseline's own bug
        result.logits_counts[verdict] += 1
        result.rows_total[phases[rid]] += 1
        result.baseline_vs_candidate_equal_rows += equal
        for side, ok in ((sides[1], b_ok), (sides[2], c_ok)):
            if ok:
                side.equal_rows[phases[rid]] += 1
            elif rid not in side.taint.tainted:
                side.unexplained.append((step, rid))
        if verdict != "OK" and result.logits_first is None:
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
        if verdict == "REGRESSION" and not b_ok and not regressed:
            verdict = "SHARED-BUG"
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
