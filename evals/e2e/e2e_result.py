"""The outcome of one ``e2e`` run: per-step verdicts, the first divergence, the text effects, and how it prints."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from evals.e2e.e2e_options import E2EOptions
from validation.verdicts import Verdict


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
        """Every non-OK verdict found (slots, logits, text or a failure), worst first; ``[Verdict.OK]`` if none."""
        return [v for v in list(Verdict)[:3] if self._count(v)] or [Verdict.OK]

    @property
    def verdict(self) -> str:
        return self.verdicts[0]

    def _count(self, verdict: str) -> int:
        return (self.slot_counts[verdict] + self.logits_counts[verdict]
                + sum(r["verdict"] == verdict for r in self.requests) + (self.failure_verdict == verdict))

    @property
    def exit_code(self) -> int:
        return 1 if self.verdict == Verdict.REGRESSION else 0

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
            "  slots (core triage, elements): " + format_counts(self.slot_counts),
            "  logits rows (bit for bit):     " + format_counts(self.logits_counts)
            + f"; baseline == candidate on {self.baseline_vs_candidate_equal_rows}/{rows}",
        ]
        for role, (step, message) in self.failures.items():
            lines.append(f"  {role} failed at step {step}: {message} ({self.failure_verdict}); "
                         "nothing after it is compared")
        for verdict in list(Verdict)[:3]:
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
        differing = [r for r in self.requests if r["verdict"] != Verdict.OK or not r["baseline_equal"]]
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
            "slot_counts": {v: self.slot_counts[v] for v in tuple(Verdict)},
            "slot_first": self.slot_first,
            "logits_counts": {v: self.logits_counts[v] for v in tuple(Verdict)},
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


def format_counts(counts: Counter) -> str:
    return ", ".join(f"{counts[v]} {v}" for v in tuple(Verdict))
