"""Benchmark of the property suite: examples per second per property, median of repeated runs.

Why: the ci profile must make >= 5,000 states in <= 60 s on two cores; this measures each
property's throughput in one process (legacy vs single_step, block size 64, 2 layers, ci profile
settings with ``--examples`` per property), so budgets in properties/profiles.py can be set from it.

    .venv/bin/python benchmarks/bench_properties.py --examples 200 --repeats 3

``--costs`` instead measures what ``profiles.COST`` holds: each property's milliseconds per state (the machine's per
run) in whole ``dsa-validate fuzz --profile ci --json`` commands, one fresh process per repeat, as they split the
properties over workers and share out a time budget:

    .venv/bin/python benchmarks/bench_properties.py --costs --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile

from properties import profiles
from properties.fuzz import run_fuzz


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=200, help="examples (machine: runs) per property")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", default="legacy")
    parser.add_argument("--candidate", default="single_step")
    parser.add_argument("--costs", action="store_true", help="profiles.COST from whole ci commands instead")
    args = parser.parse_args()
    if args.costs:
        costs(args.repeats)
        return
    print(f"| property | examples/s (median of {args.repeats}) | examples per run |")
    print("| --- | --- | --- |")
    for name in profiles.PROPERTIES:
        rates, counts = [], []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as out:
                stats = run_fuzz(args.baseline, args.candidate, profile="ci", properties=[name], jobs=1,
                                 max_examples=args.examples // (10 if name == profiles.MACHINE else 1),
                                 out_dir=out).properties[name]
            rates.append(stats.examples / stats.seconds)
            counts.append(stats.examples)
        print(f"| {name} | {statistics.median(rates):.1f} | {statistics.median(counts):.0f} |", flush=True)


def costs(repeats: int) -> None:
    """Milliseconds per state of each property (the machine: per run) in whole ``fuzz --profile ci`` commands."""
    per: dict[str, list[float]] = {name: [] for name in profiles.PROPERTIES}
    for repeat in range(repeats):
        with tempfile.TemporaryDirectory() as out:
            done = subprocess.run([sys.executable, "-m", "validation.cli", "fuzz", "--profile", "ci", "--json",
                                   "--out", out], capture_output=True, text=True, check=False)
        if not done.stdout.strip():  # exit 2 (bad input, a missing extra) reports on stderr, not as JSON
            sys.exit(f"fuzz exited {done.returncode} without a report: {done.stderr.strip()[-500:]}")
        report = json.loads(done.stdout)
        row = []
        for name, stats in report["properties"].items():
            units = profiles.BUDGETS["ci"][name] if name == profiles.MACHINE else stats["examples"]
            per[name].append(1000 * stats["seconds"] / units)
            row.append(f"{name} {stats['examples']} in {stats['seconds']:.2f} s")
        print(f"run {repeat + 1} (exit {done.returncode}): " + ", ".join(row), flush=True)
    print("COST = {" + ", ".join(f'"{name}": {statistics.median(v):.2f}' for name, v in per.items()) + "}"
          f"  # ms per state (the machine: per run), median of {repeats}")


if __name__ == "__main__":
    main()
