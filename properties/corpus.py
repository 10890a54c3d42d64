"""Draw the shared cross-backend corpus (``fixtures/corpus/states.jsonl.gz``) from the property suite's strategies.

``validation.cross_backend`` digests every path on these states, on each backend; the states come from here so
that the floor never imports the strategies.

    python -m properties.corpus --count 400 --out fixtures/corpus/states.jsonl.gz
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import seed as fix_seed

from properties.strategies import SWEEP_BLOCK_SIZES, cases
from validation.cross_backend import SHARED_BUFFER

# Corpus states stay small (the corpus travels to the GPU box with the tree): at most this many table cells.
CORPUS_MAX_CELLS = 4096


def draw_states(count: int, *, seed: int | None = None, max_cells: int | None = None) -> list[dict]:
    """``count`` realistic states from the property suite's strategy, half at block size 64, half over the sweep
    sizes, each with the shared buffer size (so one instance can run them all in order). ``seed`` None draws
    derandomised (the committed corpus); ``max_cells`` keeps only states whose tables hold at most that many cells."""
    states: list[dict] = []
    for sizes, share in (((64,), count // 2), (SWEEP_BLOCK_SIZES, count - count // 2)):
        if not share:
            continue

        @settings(max_examples=share, derandomize=seed is None, database=None, deadline=None,
                  suppress_health_check=list(HealthCheck))
        @given(cases(sizes))
        def collect(case) -> None:
            if max_cells is not None:
                assume(case.state.block_tables.size + case.state.past_rows.size <= max_cells)
            data = case.state.to_dict()
            data["max_num_batched_tokens"] = max(SHARED_BUFFER, data["max_num_batched_tokens"])
            states.append(data)

        (collect if seed is None else fix_seed(seed)(collect))()
    return states


def make_corpus(count: int, out: Path) -> int:
    """Write the committed corpus: ``count`` derandomised states, each small enough to travel."""
    states = draw_states(count, max_cells=CORPUS_MAX_CELLS)
    out.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(out, "wt") as fh:
        for data in states:
            fh.write(json.dumps(data, separators=(",", ":")) + "\n")
    return len(states)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m properties.corpus", description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    print(f"{make_corpus(args.count, args.out)} states written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
