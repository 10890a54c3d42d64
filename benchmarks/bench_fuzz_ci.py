"""The ``ci`` fuzz profile's throughput: states per CPU-second and wall time, before and after, fresh processes.

Why CPU-seconds: the machine is shared (several engineers on 2 cores), so wall time mostly measures the
load; the CPU time of the whole process tree (``os.wait4`` of ``dsa-validate fuzz``, which reaps its
workers) is what one state costs a core. Each repeat runs every source tree once, interleaved, so the
trees see the same load; the load average is printed with each run. Coverage is checked on every run:
states per property, required scenarios missed, exit code.

    .venv/bin/python benchmarks/bench_fuzz_ci.py --tree before=/tmp/main-ffb7dba --tree after=. --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_once(tree: Path, profile: str, extra: list[str]) -> dict:
    """One fresh ``dsa-validate fuzz --profile PROFILE --json`` from ``tree``: wall, CPU, and its result."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        command = [sys.executable, "-m", "validation.cli", "fuzz", "--profile", profile, "--json",
                   "--out", str(Path(tmp) / "out"), *extra]
        env = {**os.environ, "PYTHONPATH": str(tree.resolve())}
        load = os.getloadavg()[0]
        start = time.perf_counter()
        # cwd is the tree: ``python -m`` puts the working directory first on sys.path, ahead of PYTHONPATH, so
        # run from elsewhere every tree would time the code of the directory it was started in.
        with open(out, "w") as handle:
            child = subprocess.Popen(command, cwd=tree.resolve(), env=env, stdout=handle, stderr=subprocess.DEVNULL,
                                     start_new_session=True)  # the example database is off in the ci profile
            _, status, usage = os.wait4(child.pid, 0)
            child.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        result = json.loads(out.read_text())
    cpu = usage.ru_utime + usage.ru_stime
    return {"wall": wall, "cpu": cpu, "states": result["examples"], "exit": child.returncode,
            "missing": result["missing_scenarios"], "load": load,
            "per_property": {n: p["examples"] for n, p in result["properties"].items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", required=True, metavar="NAME=DIR",
                        help="a source tree to time (a checkout of the project); repeatable, run interleaved")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", default="ci")
    parser.add_argument("extra", nargs="*", help="more fuzz arguments (after --)")
    args = parser.parse_args()
    trees = dict(spec.split("=", 1) for spec in args.tree)
    runs: dict[str, list[dict]] = {name: [] for name in trees}
    for repeat in range(args.repeats):
        for name, tree in trees.items():
            run = run_once(Path(tree), args.profile, args.extra)
            runs[name].append(run)
            print(f"run {repeat + 1} {name}: {run['states']} states, {run['cpu']:.1f} CPU s, {run['wall']:.1f} s wall, "
                  f"{run['states'] / run['cpu']:.0f} states/CPU-s, load {run['load']:.1f}, exit {run['exit']}, "
                  f"missing {run['missing'] or 'none'}, {run['per_property']}", flush=True)
    print(f"\n| tree | states | states per CPU-second (median of {args.repeats}) | CPU s | wall s | load |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, done in runs.items():
        rate = statistics.median(r["states"] / r["cpu"] for r in done)
        print(f"| {name} | {statistics.median(r['states'] for r in done):.0f} | {rate:.0f} | "
              f"{statistics.median(r['cpu'] for r in done):.1f} | {statistics.median(r['wall'] for r in done):.1f} | "
              f"{min(r['load'] for r in done):.1f}-{max(r['load'] for r in done):.1f} |")
    if len(runs) == 2:
        (a, ra), (b, rb) = runs.items()
        ratio = statistics.median(r["states"] / r["cpu"] for r in rb) / statistics.median(r["states"] / r["cpu"] for r in ra)
        print(f"\n{b} / {a}, states per CPU-second: {ratio:.2f}x")


if __name__ == "__main__":
    main()
