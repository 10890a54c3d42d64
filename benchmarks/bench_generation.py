"""What generating the ``ci`` profile's single-step states costs, per tree, and which states the cost is in.

Why: the stage clocks (``bench_fuzz_stages.py``) put generation first. This replays the scheduler model alone on
the very knob draws one ``ci`` run makes (equivalence and invariants, recorded once, in process), so trees can be
compared on the same inputs, and prints a digest of every state, phase and scenario: two trees with one digest
generate the same states. Each repeat of each tree is a fresh process that imports that tree's code.

    .venv/bin/python benchmarks/bench_generation.py --tree head=/tmp/t-3b5658c --tree now=. --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

RECORD = r"""
import pickle, sys
from properties import fuzz, strategies
build, draws = strategies._build_case, []
def recording(knobs, seed):
    draws.append((knobs, seed))
    return build(knobs, seed)
strategies._build_case = recording
fuzz.run_fuzz(profile="ci", in_process=True, out_dir=sys.argv[2], properties=["equivalence", "invariants"])
with open(sys.argv[1], "wb") as fh:
    pickle.dump(draws, fh)
"""

REPLAY = r"""
import hashlib, json, pickle, sys, time
import numpy as np
from properties import strategies
with open(sys.argv[1], "rb") as fh:
    draws = pickle.load(fh)
digest, rows = hashlib.sha256(), []
for knobs, seed in draws:
    start = time.process_time()
    case = strategies._build_case(knobs, seed)
    spent = time.process_time() - start
    digest.update(case.state.to_json().encode() + repr(case.phases).encode() + repr(sorted(case.tags)).encode())
    rows.append((int((case.state.block_tables >= 0).sum()), case.state.bsz, spent))
print(json.dumps({"digest": digest.hexdigest()[:16], "rows": rows}))
"""

# Half-open tiers [low, high): of the table's allocated block ids, and of the batch's requests.
BLOCK_TIERS = ((0, 100), (100, 1_000), (1_000, 10_000), (10_000, None))
BATCH_TIERS = ((0, 9), (9, 97), (97, 1025), (1025, None))


def _tiers(rows: list[list[float]], column: int, tiers: tuple[tuple[int, int | None], ...], unit: str) -> None:
    """Generation CPU by tier of one column of ``rows`` (block ids, requests, CPU s)."""
    total = sum(r[2] for r in rows)
    print(f"\n| {unit} | states | CPU s | share of generation |\n| --- | --- | --- | --- |")
    for low, high in tiers:
        inside = [r for r in rows if r[column] >= low and (high is None or r[column] < high)]
        spent = sum(r[2] for r in inside)
        label = f"{low}+" if high is None else f"{low}-{high - 1}"
        print(f"| {label} | {len(inside)} | {spent:.3f} | {100 * spent / total:.0f}% |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", required=True, help="NAME=PATH, a checkout or git archive")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    trees = [(name, Path(path).resolve()) for name, path in (t.split("=", 1) for t in args.tree)]
    with tempfile.TemporaryDirectory() as tmp:
        draws = Path(tmp) / "draws.pkl"
        subprocess.run([sys.executable, "-c", RECORD, str(draws), str(Path(tmp) / "fuzz")], cwd=REPO, check=True,
                       capture_output=True)
        results: dict[str, list[dict]] = {name: [] for name, _ in trees}
        for repeat in range(args.repeats):
            for name, path in trees:  # alternating, so every tree sees the same load
                env = {**os.environ, "PYTHONPATH": str(path)}
                out = subprocess.run([sys.executable, "-c", REPLAY, str(draws)], cwd=path, env=env, check=True,
                                     capture_output=True, text=True).stdout
                run = json.loads(out.strip().splitlines()[-1])
                results[name].append(run)
                print(f"run {repeat + 1} {name}: {len(run['rows'])} states, {sum(r[2] for r in run['rows']):.3f} CPU s, "
                      f"digest {run['digest']}", flush=True)
    print(f"\n| tree | states | generation CPU s (median of {args.repeats}) | digest |\n| --- | --- | --- | --- |")
    for name, runs in results.items():
        cpu = statistics.median(sum(r[2] for r in run["rows"]) for run in runs)
        print(f"| {name} | {len(runs[0]['rows'])} | {cpu:.3f} | {', '.join(sorted({r['digest'] for r in runs}))} |")
    last = results[trees[-1][0]][-1]["rows"]
    print(f"\nWhere {trees[-1][0]}'s last run spent it:")
    _tiers(last, 0, BLOCK_TIERS, "block ids in the table")
    _tiers(last, 1, BATCH_TIERS, "requests (bsz)")


if __name__ == "__main__":
    main()
