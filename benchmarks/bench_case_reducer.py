"""What the state reducer buys and costs: counterexample sizes and the mutants command's CPU, per source tree.

Why: ``properties/case_reducer.py`` re-runs the failing property up to 400 times after hypothesis has shrunk. This
runs the whole ``dsa-validate mutants --profile ci --no-baseline --json`` command (fresh processes, trees
interleaved so they see the same load) and prints, per mutant, the counterexample's requests, tokens, table cells,
earlier steps and JSON characters (its history included) in each tree, then the command's CPU seconds (median of
``--repeats``).

    .venv/bin/python benchmarks/bench_case_reducer.py --tree before=/tmp/t-head --tree now=. --repeats 3
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


def run_once(tree: Path) -> tuple[float, float, dict]:
    """One fresh mutants command from ``tree``: its CPU seconds (the process and its children), wall, JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "mutants.json"
        command = [sys.executable, "-m", "validation.cli", "mutants", "--profile", "ci", "--no-baseline",
                   "--json", str(out)]
        env = {**os.environ, "PYTHONPATH": str(tree.resolve())}
        start = time.perf_counter()
        child = subprocess.Popen(command, cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{tree}: the mutants command exited {os.waitstatus_to_exitcode(status)}")
        return usage.ru_utime + usage.ru_stime, wall, json.loads(out.read_text())


def sizes(result: dict) -> dict[str, tuple[int, int, int, int, int]]:
    """Per mutant: requests, tokens and table cells of the counterexample's last state, its earlier steps, and the
    JSON characters of the state and those steps."""
    out = {}
    for mutant in result["mutants"]:
        case = mutant["counterexample"]
        state, history = case["state"], case.get("history", [])
        cells = sum(len(row) for row in state["block_tables"])
        out[mutant["name"]] = (len(state["seq_lens_this_time"]), sum(state["seq_lens_this_time"]), cells, len(history),
                               len(json.dumps([state, *history], separators=(",", ":"))))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", required=True, metavar="NAME=DIR")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    trees = dict(spec.split("=", 1) for spec in args.tree)
    cpu: dict[str, list[float]] = {name: [] for name in trees}
    wall: dict[str, list[float]] = {name: [] for name in trees}
    shapes: dict[str, dict] = {}
    for repeat in range(args.repeats):
        for name, tree in trees.items():
            seconds, elapsed, result = run_once(Path(tree))
            cpu[name].append(seconds)
            wall[name].append(elapsed)
            shapes[name] = sizes(result)
            killed = sum(m["killed"] for m in result["mutants"])
            print(f"run {repeat + 1} {name}: {seconds:.1f} CPU s, {elapsed:.1f} s wall, {killed}/"
                  f"{len(result['mutants'])} killed, load {os.getloadavg()[0]:.1f}", flush=True)
    names = list(trees)
    print("\n| mutant | " + " | ".join(f"{n}: requests / tokens / cells / earlier steps / JSON chars" for n in names) + " |")
    print("| --- |" + " --- |" * len(names))
    for mutant in shapes[names[0]]:
        cells = [" / ".join(f"{v:,}" for v in shapes[n][mutant]) for n in names]
        print(f"| {mutant} | " + " | ".join(cells) + " |")
    print("\n| tree | CPU s (median) | wall s (median) |\n| --- | --- | --- |")
    for name in names:
        print(f"| {name} | {statistics.median(cpu[name]):.1f} | {statistics.median(wall[name]):.1f} |")


if __name__ == "__main__":
    main()
