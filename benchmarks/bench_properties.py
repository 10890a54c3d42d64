"""Benchmark of the property suite: examples per second per property, median of repeated runs.

Why: the ci profile must make >= 5,000 states in <= 60 s on two cores; this measures each
property's throughput in one process (legacy vs single_step, block size 64, 2 layers, ci profile
settings with ``--examples`` per property), so budgets in properties/profiles.py can be set from it.

    .venv/bin/python benchmarks/bench_properties.py --examples 200 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

from properties import profiles
from properties.fuzz import run_fuzz


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=200, help="examples (machine: runs) per property")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", default="legacy")
    parser.add_argument("--candidate", default="single_step")
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
