"""Whole-process wall time and peak RSS of ``dsa-validate e2e``, median of fresh processes.

The targets (issue 11): all three runs under 60 s and peak RSS under 2 GB on this 2-core machine. Each
repeat is a new process of the real console script (cold: it imports Paddle, reads and dequantizes the
GGUF, builds the tokenizer), timed from outside; peak RSS is the child's maximum resident set size as the
kernel reports it (``resource.getrusage(RUSAGE_CHILDREN)`` after each child, which only grows, so each
repeat runs under its own short-lived parent), with its CPU time (user + system) and the load average
after it, since wall time on a shared machine says as much about the neighbours as about ``e2e``.

    python benchmarks/bench_e2e.py                       # the default command, 3 repeats
    python benchmarks/bench_e2e.py --repeats 3 -- --padding capture
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

PROBE = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
rc = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
wall = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
first = rc.stdout.splitlines()[0] if rc.stdout else ""
print(json.dumps([wall, usage.ru_maxrss, usage.ru_utime + usage.ru_stime, rc.returncode, first]))
"""


def measure_once(command: list[str]) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, *command], capture_output=True, text=True, check=True)
    wall, peak_kib, cpu, rc, first = json.loads(out.stdout)
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "peak_rss_mb": round(peak_kib / 1024, 1), "exit": rc,
            "first_line": first, "load_average": os.getloadavg()[0]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="write the runs and medians here")
    parser.add_argument("args", nargs="*", help="arguments for dsa-validate e2e (after --)")
    args = parser.parse_args()
    exe = str(Path(sys.executable).with_name("dsa-validate"))
    if not Path(exe).exists():
        exe = shutil.which("dsa-validate") or "dsa-validate"
    command = [exe, "e2e", *args.args]
    runs = []
    for i in range(args.repeats):
        run = measure_once(command)
        runs.append(run)
        print(f"run {i + 1}: {run['wall_s']} s wall, {run['cpu_s']} s CPU, peak RSS {run['peak_rss_mb']} MB, "
              f"load {run['load_average']:.1f}, exit {run['exit']}: {run['first_line']}", file=sys.stderr)
    summary = {
        "command": " ".join(["dsa-validate", "e2e", *args.args]),
        "repeats": args.repeats,
        "median_wall_s": statistics.median(r["wall_s"] for r in runs),
        "median_cpu_s": statistics.median(r["cpu_s"] for r in runs),
        "median_peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in runs),
        "runs": runs,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    print(json.dumps(summary, indent=1))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(summary, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
