"""Time to detection of every seeded bug: examples and seconds until the first failing example.

Runs the catalogue ``--repeats`` times under a profile (no second opinion against the baseline,
which is not part of the kill) and prints, per mutant, the examples to kill (deterministic under
the derandomised ``ci`` profile) and the median seconds; then the medians over mutants. ``--set outside``
hunts the seeded bugs written after the catalogue (``fixtures/outside_mutants.py``) instead.

    python benchmarks/bench_mutants.py --profile ci --repeats 3
    python benchmarks/bench_mutants.py --set outside --profile ci --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile

import fixtures
from fixtures.outside_mutants import OUTSIDE_MUTANTS
from properties.mutation import catalogue_specs, run_mutants


def specs(which: str) -> list[str]:
    """The catalogue's specs, or the outside set's as file specs (hunted like any outside candidate)."""
    if which == "catalogue":
        return catalogue_specs()
    return [f"{fixtures.ROOT / 'outside_mutants.py'}:{name}" for name in OUTSIDE_MUTANTS]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="ci")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--set", choices=("catalogue", "outside"), default="catalogue")
    args = parser.parse_args()
    runs = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as out:
            runs.append(run_mutants(specs(args.set), profile=args.profile, out_dir=out, check_baseline=False))
    rows = []
    for per_mutant in zip(*runs):
        first = per_mutant[0]
        seconds = [o.seconds_to_kill for o in per_mutant if o.seconds_to_kill is not None]
        rows.append({"mutant": first.name, "bug_class": first.bug_class, "killed": all(o.killed for o in per_mutant),
                     "caught_by": f"{first.property} ({first.layer})", "examples_to_kill": first.examples_to_kill,
                     "median_seconds_to_kill": round(statistics.median(seconds), 3) if seconds else None})
        print(json.dumps(rows[-1]))
    killed = [r for r in rows if r["killed"]]
    print(json.dumps({"mutants": len(rows), "killed": len(killed), "repeats": args.repeats,
                      "median_seconds_to_kill": statistics.median(r["median_seconds_to_kill"] for r in killed),
                      "median_examples_to_kill": statistics.median(r["examples_to_kill"] for r in killed)}))


if __name__ == "__main__":
    main()
