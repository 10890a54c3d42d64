"""How commands end when stopped: SIGTERM to a Paddle ``check`` (ends, or hangs), Ctrl-C to a fuzz run (report).

Why: Paddle's import installs a C++ SIGTERM handler that can deadlock inside the signal; a CI job's timeout
would then leave a process that never ends. Each trial is a fresh process from each source tree, interleaved:

- ``check``: ``dsa-validate check`` on a shipped state at ``--layers 512``, repeated in one process for as long
  as the trial lasts (Paddle ops all the time), sent SIGTERM after ``--after`` seconds; it either exits (how
  long it took) or is counted as hung after ``--hang-after`` seconds, then SIGKILLed.
- ``fuzz`` (``--fuzz-trials``): ``dsa-validate fuzz --profile nightly`` sent Ctrl-C (SIGINT to its process
  group) after 15 s: exit code, seconds to exit, states in the partial report, worker processes left.

    .venv/bin/python benchmarks/bench_stop.py --tree before=/tmp/t-head --tree now=. --trials 10 --fuzz-trials 3
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STATE = REPO / "fixtures" / "states" / "chunked_prefill.json"
# The check workload: the command's own parser and run_check, over and over, until the signal.
CHECK_LOOP = (
    "import contextlib, io, sys\n"
    "from validation.cli import slot_commands\n"
    "from validation.cli.entry import build_parser\n"
    "args = build_parser('check').parse_args(['check', '--state', sys.argv[1], '--layers', '512'])\n"
    "with contextlib.redirect_stdout(io.StringIO()):\n"
    "    slot_commands.run_check(args)\n"
    "print('ready', flush=True)\n"
    "while True:\n"
    "    with contextlib.redirect_stdout(io.StringIO()):\n"
    "        slot_commands.run_check(args)\n"
)


def check_trial(tree: Path, after: float, hang_after: float) -> float | None:
    """Seconds from SIGTERM to exit, or None when the process had not ended ``hang_after`` seconds later."""
    env = {**os.environ, "PYTHONPATH": str(tree.resolve())}
    child = subprocess.Popen([sys.executable, "-c", CHECK_LOOP, str(STATE)], cwd=tree.resolve(), env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        assert child.stdout.readline() == b"ready\n", "the check workload did not start"
        time.sleep(after)
        sent = time.perf_counter()
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=hang_after)
        except subprocess.TimeoutExpired:
            return None
        return time.perf_counter() - sent
    finally:
        child.kill()
        child.wait()


def fuzz_trial(tree: Path, after: float) -> dict:
    """A nightly fuzz run interrupted by Ctrl-C: exit code, seconds to exit, states reported, workers left."""
    env = {**os.environ, "PYTHONPATH": str(tree.resolve())}
    with tempfile.TemporaryDirectory() as tmp:
        child = subprocess.Popen(
            [sys.executable, "-m", "validation.cli", "fuzz", "--profile", "nightly", "--json", "--out", tmp],
            cwd=tree.resolve(), env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        time.sleep(after)
        workers = Path(f"/proc/{child.pid}/task/{child.pid}/children").read_text().split()
        sent = time.perf_counter()
        os.killpg(child.pid, signal.SIGINT)
        out, _ = child.communicate(timeout=120)
        seconds = time.perf_counter() - sent
        time.sleep(2)
        left = [w for w in workers if Path(f"/proc/{w}").exists() and "State:\tZ" not in _status(w)]
        try:
            states = json.loads(out)["examples"]
        except (ValueError, KeyError):
            states = None  # no report: the run ended without printing one
        for pid in left:
            os.kill(int(pid), signal.SIGKILL)
    return {"exit": child.returncode, "seconds": seconds, "states": states, "workers_left": len(left)}


def _status(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return "State:\tZ"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", required=True, metavar="NAME=DIR",
                        help="a source tree (a checkout of the project); repeatable, run interleaved")
    parser.add_argument("--trials", type=int, default=10, help="SIGTERM trials of check per tree")
    parser.add_argument("--fuzz-trials", type=int, default=0, help="Ctrl-C trials of a nightly fuzz run per tree")
    parser.add_argument("--after", type=float, default=3.0, help="seconds of work before SIGTERM (check)")
    parser.add_argument("--hang-after", type=float, default=15.0, help="seconds after SIGTERM that count as hung")
    args = parser.parse_args()
    trees = {name: Path(path) for name, path in (spec.split("=", 1) for spec in args.tree)}
    ended: dict[str, list[float | None]] = {name: [] for name in trees}
    fuzzes: dict[str, list[dict]] = {name: [] for name in trees}
    for trial in range(1, args.trials + 1):
        for name, tree in trees.items():
            seconds = check_trial(tree, args.after, args.hang_after)
            ended[name].append(seconds)
            print(f"check trial {trial} {name}: " + ("HUNG" if seconds is None else f"exited in {seconds:.3f} s"),
                  flush=True)
    for trial in range(1, args.fuzz_trials + 1):
        for name, tree in trees.items():
            result = fuzz_trial(tree, 15.0)
            fuzzes[name].append(result)
            print(f"fuzz trial {trial} {name}: {result}", flush=True)
    print("\n| tree | check: hung after SIGTERM | check: median seconds to exit (those that exited) "
          "| fuzz after Ctrl-C: exit codes | median seconds to exit | median states reported | workers left |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in trees:
        times = [t for t in ended[name] if t is not None]
        runs = fuzzes[name]
        median_time = f"{statistics.median(times):.3f}" if times else "-"
        if runs:
            codes = ",".join(str(r["exit"]) for r in runs)
            fuzz_seconds = f"{statistics.median(r['seconds'] for r in runs):.2f}"
            reported = [r["states"] for r in runs if r["states"] is not None]
            states = f"{statistics.median(reported):.0f}" if reported else "no report"
            left = str(sum(r["workers_left"] for r in runs))
        else:
            codes = fuzz_seconds = states = left = "-"
        print(f"| {name} | {len(ended[name]) - len(times)}/{len(ended[name])} | {median_time} | {codes} "
              f"| {fuzz_seconds} | {states} | {left} |")


if __name__ == "__main__":
    main()
