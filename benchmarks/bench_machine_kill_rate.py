"""How surely the state machine alone kills the seeded bugs only it can catch, under a given run shape.

Why: the ``ci`` profile's machine went from 200 runs of up to 10 steps to 100 of up to 20 (fewer start-ups per
checked step). Fewer runs means fewer server configurations drawn; this hunts the seven seeded bugs that only
the machine kills (two of the catalogue's, five of ``fixtures/outside_mutants.py``) with a random seed per
repeat, so two shapes are compared on more than the one derandomised draw of ``ci``.

    .venv/bin/python benchmarks/bench_machine_kill_rate.py --steps 10 --runs 200 --seeds 5
    .venv/bin/python benchmarks/bench_machine_kill_rate.py --steps 20 --runs 100 --seeds 5

Each line: bug, seed, killed, machine steps to the first failure, steps run, CPU s (shrinking included).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import fixtures
from properties import profiles
from properties.fuzz import run_fuzz

CATALOGUE = ("StaleTail", "ReusePreviousMapping")
OUTSIDE = ("TailResetOverRequests", "TailResetOnlyWhenReplaying", "ReusedWhenTheShapeRepeats",
           "AssumesEveryDraftAccepted", "TableRowCachedAtPrefill")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, required=True, help="steps per run (stateful_step_count)")
    parser.add_argument("--runs", type=int, required=True, help="runs (the ci profile's machine budget)")
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    profiles.STEPS["ci"] = args.steps
    profiles.BUDGETS["ci"][profiles.MACHINE] = args.runs
    specs = [f"validation.impls.mutants:{n}" for n in CATALOGUE] + [f"{fixtures.ROOT / 'outside_mutants.py'}:{n}"
                                                                     for n in OUTSIDE]
    kills: list[int] = []
    cpu: list[float] = []
    hunts = 0
    for seed in range(args.seeds):
        for spec in specs:
            with tempfile.TemporaryDirectory() as out:
                start = time.process_time()
                stats = run_fuzz("oracle", spec, profile="ci", properties=[profiles.MACHINE], seed=seed, out_dir=out,
                                 stop_at_first_failure=True, in_process=True).properties[profiles.MACHINE]
                spent = time.process_time() - start
            hunts += 1
            if stats.failed:
                kills.append(stats.examples_to_failure)
                cpu.append(spent)
            print(spec.rpartition(":")[2], seed, stats.failed, stats.examples_to_failure, stats.examples,
                  round(spent, 2), flush=True)
    print(f"steps {args.steps} runs {args.runs}: killed {len(kills)}/{hunts}"
          + (f", median {statistics.median(kills)} steps (max {max(kills)}), median {statistics.median(cpu):.2f} CPU s"
             if kills else ""))


if __name__ == "__main__":
    main()
