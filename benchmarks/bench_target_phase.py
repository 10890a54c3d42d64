"""What hypothesis' target phase costs the ``ci`` profile, and what it buys: a lever for issue 18, measured.

Why: the ``ci`` run's single-step draws sit in the batch tiers past 96 requests far more often than the batch
dial's 3 in 32, and those states are most of the generation CPU. The target phase (its hill-climb on the
largest block id, ``strategies.note``) is what moves them there. This runs the ``ci`` profile in process, once as
it is and once with ``Phase.target`` left out, each repeat in a fresh process (the arms alternate), and prints
per arm: CPU seconds after the imports (the run alone, not a whole command), states, the share of knob draws past
96 requests and of the state-building CPU they take, required scenarios missed, and the states that reached each
scenario, so the speed can be weighed against what the states cover.

    .venv/bin/python benchmarks/bench_target_phase.py --repeats 3
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
ARMS = ("on", "off")

CHILD = r"""
import json, sys, time
from hypothesis import Phase
from properties import profiles, strategies
from properties.fuzz import run_fuzz
from validation.impls.paddle_runtime import paddle

if sys.argv[2] == "off":
    profiles._COMMON["phases"] = tuple(p for p in profiles._COMMON["phases"] if p is not Phase.target)
draws = {"all": 0, "large": 0}
generation = {"all": 0.0, "large": 0.0}  # CPU s building states (the scheduler model), all and past 96 requests
knobs, build = strategies._knobs, strategies._build_case
def counted(draw, block_sizes):
    drawn = knobs(draw, block_sizes)
    draws["all"] += 1
    draws["large"] += drawn["bsz"] > strategies.LARGE_BATCH
    return drawn
def clocked(drawn, seed):
    start = time.process_time()
    case = build(drawn, seed)
    spent = time.process_time() - start
    generation["all"] += spent
    if drawn["bsz"] > strategies.LARGE_BATCH:
        generation["large"] += spent
    return case
strategies._knobs, strategies._build_case = counted, clocked
paddle()
start = time.process_time()
result = run_fuzz(profile="ci", in_process=True, out_dir=sys.argv[1])
print(json.dumps({"cpu": time.process_time() - start, "states": result.examples, "draws": draws, "generation": generation,
                  "missing": sorted(result.missing), "reached": dict(result.reached)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    runs: dict[str, list[dict]] = {arm: [] for arm in ARMS}
    for repeat in range(args.repeats):
        for arm in ARMS:
            with tempfile.TemporaryDirectory() as out_dir:
                done = subprocess.run([sys.executable, "-c", CHILD, out_dir, arm], cwd=REPO,
                                      capture_output=True, text=True)
            if done.returncode:  # the child's own traceback, not a CalledProcessError that hides it
                sys.exit(f"target {arm} exited {done.returncode}: {done.stderr.strip()[-800:]}")
            run = json.loads(done.stdout.strip().splitlines()[-1])
            runs[arm].append(run)
            gen = run["generation"]
            print(f"repeat {repeat + 1}, target {arm}: {run['cpu']:.2f} CPU s, {run['states']} states, "
                  f"{run['draws']['large']}/{run['draws']['all']} draws past 96 requests, building states "
                  f"{gen['all']:.2f} CPU s ({gen['large']:.2f} past 96), missing {run['missing'] or 'none'}", flush=True)
    print(f"\n| target phase | CPU s (median of {args.repeats}) | states per CPU-second | draws past 96 requests | "
          "building states, CPU s (past 96 requests) |")
    print("| --- | --- | --- | --- | --- |")
    for arm in ARMS:
        cpu = statistics.median(r["cpu"] for r in runs[arm])
        states = runs[arm][0]["states"]
        draws = runs[arm][0]["draws"]
        built = statistics.median(r["generation"]["all"] for r in runs[arm])
        large = statistics.median(r["generation"]["large"] for r in runs[arm])
        print(f"| {arm} | {cpu:.2f} | {states / cpu:.0f} | {draws['large']} of {draws['all']} | {built:.2f} ({large:.2f}) |")
    print("\nstates per scenario (first repeat; derandomised, so every repeat draws the same):")
    on, off = runs["on"][0]["reached"], runs["off"][0]["reached"]
    for tag in sorted(set(on) | set(off)):
        if not tag.startswith("bug_class"):  # the pinned examples: the same in both arms
            print(f"  {tag}: {on.get(tag, 0)} -> {off.get(tag, 0)}")


if __name__ == "__main__":
    main()
