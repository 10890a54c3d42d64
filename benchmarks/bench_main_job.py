"""Time `dsa-validate run` as a user runs it: whole fresh processes, each part's seconds from its --json summary.

Each repetition is a new process with a new --out folder (nothing of an earlier run is resumed), timed from
spawn to exit, with its own peak RSS (os.wait4). Prints each part's median and the whole process's median wall
time, CPU time and peak RSS, with the load average before and after, so a figure taken on a shared machine says so.

    .venv/bin/python benchmarks/bench_main_job.py --repeats 3 [--json OUT]
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

REPO = Path(__file__).resolve().parents[1]


def one_run(extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        summary = Path(tmp) / "summary.json"
        argv = [sys.executable, "-m", "validation.cli", "run", "--out", str(Path(tmp) / "runs"), "--json", str(summary),
                *extra]
        load = os.getloadavg()[0]
        started = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        parts = json.loads(summary.read_text())["parts"] if summary.exists() else []
    return {"exit": os.waitstatus_to_exitcode(status), "wall_s": round(wall, 1),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024),
            "parts": {p["part"]: p["seconds"] for p in parts}, "statuses": {p["part"]: p["status"] for p in parts},
            "load_before": round(load, 1), "load_after": round(os.getloadavg()[0], 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write every run's figures here")
    parser.add_argument("extra", nargs="*", help="arguments passed on to dsa-validate run (after --)")
    args = parser.parse_args()
    runs = []
    for i in range(args.repeats):
        runs.append(one_run(args.extra))
        print(f"run {i + 1}: {json.dumps(runs[-1])}", flush=True)
    parts = list(runs[0]["parts"])
    print("\n| part | " + " | ".join(f"run {i + 1}" for i in range(len(runs))) + " | median |")
    print("|---|" + "---:|" * (len(runs) + 1))
    for part in parts:
        values = [r["parts"].get(part, float("nan")) for r in runs]
        print(f"| {part} | " + " | ".join(f"{v:.0f} s" for v in values) + f" | {statistics.median(values):.0f} s |")
    for key, unit in (("wall_s", "s"), ("cpu_s", "s"), ("peak_rss_mb", "MB")):
        values = [r[key] for r in runs]
        print(f"| whole process, {key} | " + " | ".join(f"{v} {unit}" for v in values)
              + f" | {statistics.median(values)} {unit} |")
    print("exit codes:", [r["exit"] for r in runs], "load average before/after:",
          [(r["load_before"], r["load_after"]) for r in runs])
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1) + "\n")
    return 0 if all(r["exit"] == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
