"""Whole-process benchmark: ``dsa-validate ifeval score`` against the reference script, as users run them.

Why: scoring 541 responses is a fraction of a second; what a user waits for is the whole process:
interpreter start, imports, models and profiles loaded, prompts read, scored, printed. Each timed run
is a fresh process (so nothing is memoised from an earlier run); ours and the reference alternate,
so both see the same machine load. Measured per process with ``os.wait4``: wall time, CPU time (user +
system) and peak resident memory.

    .venv/bin/python benchmarks/bench_ifeval_process.py --data ../shared/ifeval/input_data.jsonl \
        --repeats 7 --reference '/tmp/ifref-venv/bin/python /tmp/ifref/ref_score.py {data} {responses}'

``--reference`` is a command template (``{data}``, ``{responses}`` filled in): here a scratch copy of
google-research's ``instruction_following_eval`` as lm-evaluation-harness 0.4.13 ships it, in a venv
of its own, kept outside the repository (see BENCHMARKS.md for how it was made). Response sets:
``echo`` (each prompt echoed), ``synthetic`` (long model-like responses, ``bench_ifeval.py``) and any
``--responses FILE``. ``--first-run`` also times ours with an empty per-user cache (the first run on a
machine, which writes Punkt's tables and langdetect's profile cache).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def measure(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float, float]:
    """(wall s, CPU s, peak RSS MB) of one process running ``command`` to completion."""
    start = time.perf_counter()
    pid = os.posix_spawn(command[0], command, env if env is not None else dict(os.environ),
                         file_actions=[(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)])
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{shlex.join(command)} exited {os.waitstatus_to_exitcode(status)}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def response_sets(data_path: str, extra: list[str], folder: Path) -> dict[str, Path]:
    from bench_ifeval import synthetic_responses
    from evals.ifeval import data

    prompts = data.load_prompts(data_path)
    sets = {"echo": [{"key": p.key, "response": p.prompt} for p in prompts],
            "synthetic": synthetic_responses(prompts)}
    paths = {}
    for name, rows in sets.items():
        paths[name] = folder / f"{name}.jsonl"
        paths[name].write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    for path in extra:
        paths[Path(path).stem] = Path(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "ifeval" / "input_data.jsonl"))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--reference", help="reference command template with {data} and {responses}")
    parser.add_argument("--responses", action="append", default=[], help="another responses JSONL to time")
    parser.add_argument("--first-run", action="store_true", help="also time ours with an empty per-user cache")
    args = parser.parse_args(argv)
    ours_bin = str(Path(sys.executable).parent / "dsa-validate")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dsa-validation"
    ref_env = dict(os.environ, NLTK_DATA=str(cache / "nltk_data"))  # the reference reads Punkt's tables too
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; {args.repeats} runs each, alternating")
    with tempfile.TemporaryDirectory() as tmp:
        for name, responses in response_sets(args.data, args.responses, Path(tmp)).items():
            ours_cmd = [ours_bin, "ifeval", "score", "--data", args.data, "--responses", str(responses)]
            measure(ours_cmd)  # the user's steady state: caches written by an earlier run
            ref_cmd = None
            if args.reference:
                ref_cmd = shlex.split(args.reference.format(data=args.data, responses=responses))
                measure(ref_cmd, ref_env)
            ours, theirs, first = [], [], []
            for _ in range(args.repeats):
                ours.append(measure(ours_cmd))
                if ref_cmd:
                    theirs.append(measure(ref_cmd, ref_env))
            if args.first_run:
                for _ in range(min(3, args.repeats)):
                    with tempfile.TemporaryDirectory() as empty:
                        first.append(measure(ours_cmd, dict(os.environ, XDG_CACHE_HOME=empty)))
            line = f"{name:10s} ours {_summary(ours)}"
            if theirs:
                line += f" | reference {_summary(theirs)} | ours/reference: wall " \
                        f"{_med(ours, 0) / _med(theirs, 0):.2f}, CPU {_med(ours, 1) / _med(theirs, 1):.2f}, " \
                        f"memory {_med(ours, 2) / _med(theirs, 2):.2f}"
            print(line)
            if first:
                print(f"{'':10s} ours, first run on a machine (empty cache): {_summary(first)}")
    return 0


def _med(runs: list[tuple[float, float, float]], index: int) -> float:
    return statistics.median(r[index] for r in runs)


def _summary(runs: list[tuple[float, float, float]]) -> str:
    walls = sorted(r[0] for r in runs)
    return (f"wall median {_med(runs, 0):.2f} s (min {walls[0]:.2f}, max {walls[-1]:.2f}), "
            f"CPU {_med(runs, 1):.2f} s, peak RSS {_med(runs, 2):.0f} MB")


if __name__ == "__main__":
    sys.exit(main())
