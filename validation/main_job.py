"""``dsa-validate run``: the main job on its embedded defaults, offline.

One command a new user (or a nightly job) runs to see the whole suite work: the shipped bug-class
states triaged, the property suite under the ``ci`` profile, and the IFEval scorer on the
self-written sample, checked against its hand-written verdicts. Exit 1 if any part finds a
regression or disagrees; the mutation score is its own command (``dsa-validate mutants``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from validation import compare, seam
from validation.commands import add_impl_options
from validation.state import BatchState

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def register(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser(
        "run", help="the main job: shipped states, fuzzing (ci profile), IFEval sample",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="exit status: 0 all clear, 1 a regression or a failed check, 2 bad input\n"
        "example:\n  dsa-validate run\n  dsa-validate run --candidate my_kernel.py:Slots --profile dev")
    run.add_argument("--baseline", default="legacy", help="reference side (default: legacy)")
    run.add_argument("--candidate", default="single_step", help="side under test (default: single_step)")
    run.add_argument("--profile", default="ci", choices=("dev", "ci", "nightly"), help="fuzzing profile (default: ci)")
    run.add_argument("--no-known", action="store_true", help="fail on findings recorded in fixtures/known_findings.json")
    add_impl_options(run)
    run.set_defaults(func=run_main_job)


def triage_shipped_states(baseline: str, candidate: str, backend: str, layers: int) -> int:
    """Triage every shipped state; print one summary line each; return the worst exit code."""
    base = seam.resolve(baseline, backend=backend, num_layers=layers, field_name="baseline")
    cand = seam.resolve(candidate, backend=backend, num_layers=layers, field_name="candidate")
    worst = 0
    for path in sorted((FIXTURES / "states").glob("*.json")):
        report = compare.compare_state(BatchState.from_json(path), base, cand, layers)
        print(f"  {report.summary()}")
        worst = max(worst, report.exit_code())
    return worst


def fuzz(args: argparse.Namespace) -> int:
    from properties.cli import render  # noqa: PLC0415 - the property suite loads hypothesis strategies
    from properties.runner import run_fuzz  # noqa: PLC0415

    result = run_fuzz(args.baseline, args.candidate, profile=args.profile, backend=args.backend,
                      progress=lambda line: print(f"  {line}", flush=True), use_known=not args.no_known)
    print("\n".join(f"  {line}" for line in render(result).splitlines()))
    return result.exit_code


def ifeval_sample() -> int:
    """Score the shipped sample and hold it to its hand-written verdicts."""
    from evals import cli, data  # noqa: PLC0415 - needs the ifeval extra

    prompts, responses = data.sample_paths()
    report = cli.run_ifeval(responses, prompts)
    print("\n".join(f"  {line}" for line in cli.format_table(report).splitlines()))
    expected = json.loads((FIXTURES / "ifeval" / "sample_expected.json").read_text())["verdicts"]
    wrong = [
        f"{d['key']}"
        for d in report["details"]
        if expected[str(d["key"])] != {"strict": [i["strict"] for i in d["instructions"]],
                                       "loose": [i["loose"] for i in d["instructions"]]}
    ]
    if wrong:
        print(f"  sample verdicts differ from the hand-written ones for keys: {', '.join(wrong)}")
        return 1
    print(f"  all {len(report['details'])} sample prompts scored as hand-written")
    return 0


def run_main_job(args: argparse.Namespace) -> int:
    print(f"== 1/3 shipped bug-class states: {args.baseline} vs {args.candidate}")
    codes = [triage_shipped_states(args.baseline, args.candidate, args.backend, args.layers)]
    print(f"== 2/3 property suite, profile {args.profile}: {args.baseline} vs {args.candidate}")
    codes.append(fuzz(args))
    print("== 3/3 IFEval scorer on the shipped sample")
    codes.append(ifeval_sample())
    verdict = "all clear" if max(codes) == 0 else "FAILED"
    print(f"== {verdict} (states {codes[0]}, fuzz {codes[1]}, ifeval {codes[2]})")
    return max(codes)
