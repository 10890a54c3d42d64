"""CPU time of one call of a Paddle path through the seam, per source tree, in fresh processes.

Why: the ``ci`` profile's model calls are its largest stage (BENCHMARKS, "Where the ``ci`` profile's time went");
this times them alone. Each repeat starts a fresh process per tree (Paddle imported, its indexing probed, then one
untimed warm-up call), draws the same ``ci`` states (derandomised ``case_batches`` at block size 64) and times
``observe(Path(2), inputs, 2)`` on each, a fresh instance per state, as the properties call it. Trees alternate
so they see the same load.

    .venv/bin/python benchmarks/bench_model_calls.py --tree before=/tmp/head-a873cff --tree now=. --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, sys, time
from hypothesis import HealthCheck, given, settings
from properties.strategies import case_batches
from validation.impls import paddle_paths
from validation.seam import observe

cases = []
@settings(max_examples=int(sys.argv[1]), database=None, derandomize=True, deadline=None,
          suppress_health_check=list(HealthCheck))
@given(case_batches(block_sizes=(64,)))
def draw(batch):
    cases.extend(batch)
draw()
inputs = [c.state.step_inputs() for c in cases]
out = {"states": len(inputs)}
for name in ("SingleStep", "Legacy"):
    path = getattr(paddle_paths, name)
    observe(path(2), inputs[0], 2)  # warm-up: the first call of a path pays Paddle's lazy kernel set-up
    start = time.process_time()
    for step in inputs:
        observe(path(2), step, 2)
    out[name] = (time.process_time() - start) / len(inputs) * 1e3
print(json.dumps(out))
"""


def run_once(tree: Path, examples: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree.resolve()), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", CHILD, str(examples)], cwd=tree.resolve(), env=env,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", required=True, metavar="NAME=DIR")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--examples", type=int, default=60, help="hypothesis examples (8 states each)")
    args = parser.parse_args()
    trees = dict(spec.split("=", 1) for spec in args.tree)
    runs: dict[str, list[dict]] = {name: [] for name in trees}
    for repeat in range(args.repeats):
        for name, tree in trees.items():
            result = run_once(Path(tree), args.examples)
            runs[name].append(result)
            print(f"run {repeat + 1} {name}: {result['states']} states, single_step {result['SingleStep']:.3f} ms, "
                  f"legacy {result['Legacy']:.3f} ms per call", flush=True)
    print(f"\n| tree | states | single_step ms per call (median of {args.repeats}) | legacy ms per call |")
    print("| --- | --- | --- | --- |")
    for name, results in runs.items():
        single = statistics.median(r["SingleStep"] for r in results)
        legacy = statistics.median(r["Legacy"] for r in results)
        print(f"| {name} | {results[0]['states']} | {single:.3f} | {legacy:.3f} |")


if __name__ == "__main__":
    main()
