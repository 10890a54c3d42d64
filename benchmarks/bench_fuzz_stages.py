"""The ``ci`` fuzz profile's CPU by stage, clocked exactly, and the floor it puts under states per CPU-second.

Why: issue 18 asks for 4x the ``ci`` profile's states per CPU-second. The sampling profile
(``profile_fuzz.py``) says where the time goes; this clocks it. Each stage's entry points are wrapped in an
exclusive CPU clock (a stage called inside another is charged to itself, not to its caller), so the stages
add up to the run: fixed start (interpreter, imports), model calls (the Paddle paths through the seam),
generation (scheduler model, strategies, ``BatchState`` construction and validation), the oracle, triage and
the property checks, recording, and the rest (hypothesis' engine and the property bodies' glue). The floor
is what the states would cost if generation, oracle, triage and recording cost nothing: fixed start + model
calls + the rest. Each repeat is a fresh process running ``run_fuzz(profile="ci", in_process=True)`` (the
command's worker processes and its probe before forking add CPU on top, so the command's own floor is no
lower); the clocks cost about a microsecond per wrapped call, charged to the stage that called them.

    .venv/bin/python benchmarks/bench_fuzz_stages.py --repeats 3
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
import functools, json, sys, time
from collections import Counter

totals = Counter()
calls = Counter()
nested = []  # per open clocked call: CPU spent in clocked calls inside it


def clocked(stage, fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        calls[stage] += 1
        start = time.process_time()
        nested.append(0.0)
        try:
            return fn(*args, **kwargs)
        finally:
            inner = nested.pop()
            spent = time.process_time() - start
            totals[stage] += spent - inner
            if nested:
                nested[-1] += spent
    return wrapper


def wrap(stage, owner, name, *also):
    fn = clocked(stage, getattr(owner, name))
    for target in (owner, *also):
        setattr(target, name, fn)


from properties import checks, collector, fuzz, machine, schedule_model, strategies
from validation import causes, compare, oracle, seam, state

wrap("model calls", seam, "observe", checks, machine, compare, fuzz)
wrap("generation", strategies, "_build_case")
wrap("generation", strategies, "prior_positions", machine)
for name in ("__init__", "schedule", "commit", "finish"):
    wrap("generation", schedule_model.Scheduler, name)
wrap("generation", state.BatchState, "validate")
wrap("oracle", oracle, "truth", checks, compare)
wrap("oracle", oracle, "truth_arrays", checks)
wrap("triage and checks", compare, "triage", checks, machine)
for name in ("_matches", "violations", "_all_right", "_fingerprint"):
    wrap("triage and checks", checks, name)
wrap("triage and checks", causes, "stand_in", checks)
wrap("recording", collector.Collector, "record")
from validation.impls.paddle_runtime import paddle
paddle()  # the command imports Paddle before its first state too
fixed = time.process_time()
result = fuzz.run_fuzz(profile="ci", in_process=True, out_dir=sys.argv[1], properties=[p for p in sys.argv[2].split(",") if p] or None)
total = time.process_time()
stages = {"fixed start (interpreter, imports)": fixed, **totals}
stages["rest (hypothesis engine, property glue)"] = total - fixed - sum(totals.values())
# What the clocks themselves cost, measured on an empty function: charged to the callers' stages.
empty = clocked("overhead probe", lambda: None)
start = time.process_time()
for _ in range(100_000):
    empty()
per_call = (time.process_time() - start) / 100_000
overhead = per_call * sum(n for stage, n in calls.items() if stage != "overhead probe")
print(json.dumps({"states": result.examples, "total": total, "stages": stages, "clock_overhead": overhead,
                  "model_calls": calls["model calls"]}))
"""

FLOOR = ("fixed start (interpreter, imports)", "model calls", "rest (hypothesis engine, property glue)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--properties", default="", help="P,P,... (default: all five)")
    parser.add_argument("--before-rate", type=float, default=None,
                        help="the before tree's states per CPU-second (bench_fuzz_ci.py, same session): prints "
                             "4x of it beside the floor")
    args = parser.parse_args()
    runs = []
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory() as out_dir:  # a fresh findings folder per run: nothing carried over
            out = subprocess.run([sys.executable, "-c", CHILD, out_dir, args.properties], cwd=REPO, check=True,
                                 capture_output=True, text=True).stdout
        run = json.loads(out.strip().splitlines()[-1])
        runs.append(run)
        floor = sum(run["stages"][s] for s in FLOOR)
        print(f"run {repeat + 1}: {run['states']} states, {run['total']:.2f} CPU s, "
              f"{run['states'] / run['total']:.0f} states/CPU-s; floor {floor:.2f} CPU s", flush=True)
    states = statistics.median(r["states"] for r in runs)
    total = statistics.median(r["total"] for r in runs)
    print(f"\n| stage | CPU s (median of {args.repeats}) | ms per state | share |")
    print("| --- | --- | --- | --- |")
    for stage in runs[0]["stages"]:
        cpu = statistics.median(r["stages"][stage] for r in runs)
        print(f"| {stage} | {cpu:.2f} | {1000 * cpu / states:.3f} | {100 * cpu / total:.1f}% |")
    overhead = statistics.median(r["clock_overhead"] for r in runs)
    floor = statistics.median(sum(r["stages"][s] for s in FLOOR) for r in runs)
    print(f"| total | {total:.2f} | {1000 * total / states:.3f} | 100% |")
    print(f"\nthe clocks' own cost, inside the figures above: about {overhead:.2f} CPU s")
    print(f"calls through the seam (the state machine's start-ups included): "
          f"{statistics.median(r['model_calls'] for r in runs):.0f}")
    print(f"\n{states:.0f} states: {states / total:.0f} states per CPU-second; with generation, oracle, triage and "
          f"recording free: {floor:.2f} CPU s, at most {states / floor:.0f} states per CPU-second")
    if args.before_rate:
        print(f"4x the before figure ({args.before_rate:.0f}) is {4 * args.before_rate:.0f} states per CPU-second: "
              f"{states / (4 * args.before_rate):.2f} CPU s for these states")


if __name__ == "__main__":
    main()
