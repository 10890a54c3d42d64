"""Benchmark: ``fuzz --profile ci`` with both sides ``fastdeploy:`` checkouts against the same run on the models.

Why: running a checkout's own lines (issue 16) must cost at most 2x the models' time, or reviewers stop running
it. Each repeat is a fresh ``dsa-validate fuzz`` process (imports, Paddle start-up and the checkouts' parsing
included), whole-process wall time; the fuzz exit code is printed too (1 is expected: with ``--no-known`` on both
sides the stale tail is a REGRESSION on both, found and shrunk alike; how long hypothesis shrinks it varies from
run to run, so ``--patched`` compares the fixed head on both sides, where the whole profile runs and nothing
shrinks). Median of ``--repeats``, the two sides interleaved; the load average is printed
with every run.

    .venv/bin/python benchmarks/bench_fastdeploy_source.py --repeats 3 \
        --snapshots ../shared/fastdeploy --base d2d633b05c2c --head 2d8338f9e4e6
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODELS = {"d2d633b05c2c": "legacy", "2d8338f9e4e6": "single_step", "7198b5883a0e": "fused"}


def one_run(baseline: str, candidate: str, extra: list[str]) -> tuple[float, int]:
    """Wall seconds and exit code of one fresh ``fuzz --profile ci`` process."""
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "validation.cli", "fuzz", "--profile", "ci", "--baseline", baseline,
                   "--candidate", candidate, "--out", out, *extra]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        started = time.monotonic()
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
        return time.monotonic() - started, done.returncode


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--snapshots", type=Path, default=REPO.parent / "shared" / "fastdeploy")
    parser.add_argument("--base", default="d2d633b05c2c", choices=sorted(MODELS))
    parser.add_argument("--head", default="2d8338f9e4e6", choices=sorted(MODELS))
    parser.add_argument("--seed", type=int, default=0, help="one hypothesis seed for both sides (same states)")
    parser.add_argument("--max-examples", type=int, help="examples per property instead of the ci profile's (a shorter run)")
    parser.add_argument("--patched", action="store_true",
                        help="head side with the stale-tail fix (models: tail_reset; checkouts: HEAD+fixes/"
                        "7367-stale-tail.patch): no failure to shrink, so both sides run the whole profile")
    args = parser.parse_args()
    # --no-known on both sides: the known-findings file names the models, so without it only the models' side would
    # count the stale tail as known and skip shrinking it; with it both sides find, shrink and report alike.
    extra = ["--seed", str(args.seed), "--no-known"] + ([] if args.max_examples is None else ["--max-examples", str(args.max_examples)])
    patch = f"+{REPO / 'fixes' / '7367-stale-tail.patch'}" if args.patched else ""
    sides = {
        "models": (MODELS[args.base], "tail_reset" if args.patched else MODELS[args.head]),
        "fastdeploy": (f"fastdeploy:{args.snapshots / args.base}", f"fastdeploy:{args.snapshots / args.head}{patch}"),
    }
    print(f"load before: {load()}  (cores: {os.cpu_count()})")
    runs: dict[str, list[tuple[float, int]]] = {label: [] for label in sides}
    for _ in range(args.repeats):  # interleaved, so a change of load hits both sides alike
        for label, (baseline, candidate) in sides.items():
            runs[label].append(one_run(baseline, candidate, extra))
            print(f"  {label}: {runs[label][-1][0]:.1f} s (exit {runs[label][-1][1]}), load {load()}", flush=True)
    medians = {}
    for label, (baseline, candidate) in sides.items():
        medians[label] = statistics.median(seconds for seconds, _ in runs[label])
        print(f"{label}: {baseline} vs {candidate}: " + ", ".join(f"{s:.1f} s (exit {c})" for s, c in runs[label])
              + f"; median {medians[label]:.1f} s")
    print(f"ratio fastdeploy/models: {medians['fastdeploy'] / medians['models']:.2f} (target <= 2)")
    print(f"load after: {load()}")


if __name__ == "__main__":
    main()
