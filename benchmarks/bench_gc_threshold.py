"""CPU of the ``ci`` fuzz profile with CPython's default young-generation threshold against the run's own.

Why: ``properties.fuzz`` collects young garbage every ``GC_YOUNG_THRESHOLD`` allocations while the properties
run, not every 700 (CPython's default); this measures what that saves. Each repeat is a fresh process per arm
(the arms alternate, so they see the same load) running ``run_fuzz(profile="ci", in_process=True)`` with the
threshold set to the arm's value; CPU is the process' own (``time.process_time``) around the run, Paddle
imported before it, as the command does before its first state.

    .venv/bin/python benchmarks/bench_gc_threshold.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CHILD = r"""
import gc, json, sys, time
from validation.impls.paddle_runtime import paddle
paddle()
from properties import fuzz
fuzz.GC_YOUNG_THRESHOLD = int(sys.argv[1])
start = time.process_time()
result = fuzz.run_fuzz(profile="ci", in_process=True, out_dir=sys.argv[2])
print(json.dumps({"states": result.examples, "cpu": time.process_time() - start,
                  "collections": sum(s["collections"] for s in gc.get_stats())}))
"""

CPYTHON_DEFAULT = 700


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from properties.fuzz import GC_YOUNG_THRESHOLD  # noqa: PLC0415 - the repository's value, after the path

    arms = {f"default ({CPYTHON_DEFAULT})": CPYTHON_DEFAULT, f"the run's ({GC_YOUNG_THRESHOLD})": GC_YOUNG_THRESHOLD}
    runs: dict[str, list[dict]] = {name: [] for name in arms}
    for repeat in range(args.repeats):
        for name, threshold in arms.items():
            with tempfile.TemporaryDirectory() as out_dir:  # a fresh findings folder per run: nothing carried over
                out = subprocess.run([sys.executable, "-c", CHILD, str(threshold), out_dir], cwd=REPO,
                                     check=True, capture_output=True, text=True).stdout
            run = json.loads(out.strip().splitlines()[-1])
            runs[name].append(run)
            print(f"run {repeat + 1} {name}: {run['states']} states, {run['cpu']:.2f} CPU s, "
                  f"{run['collections']} collections", flush=True)
    print(f"\n| young-generation threshold | states | CPU s (median of {args.repeats}) | collections |")
    print("| --- | --- | --- | --- |")
    for name, results in runs.items():
        print(f"| {name} | {results[0]['states']} | {statistics.median(r['cpu'] for r in results):.2f} | "
              f"{statistics.median(r['collections'] for r in results):.0f} |")


if __name__ == "__main__":
    main()
