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

from properties.strategies import SWEEP_BLOCK_SIZES, cases
from validation.cross_backend import SHARED_BUFFER

# Corpus states stay small (the corpus travels to the GPU box with the tree): at most this many table cells.
CORPUS_MAX_CELLS = 4096


def make_corpus(count: int, out: Path) -> int:
    """Draw ``count`` realistic states from the property suite's strategy (derandomised), half at
    block size 64, half swept over the sweep sizes, each with the shared buffer size."""
    states: list[dict] = []
    for sizes in ((64,), SWEEP_BLOCK_SIZES):
        @settings(max_examples=count // 2, derandomize=True, database=None, deadline=None,
                  suppress_health_check=list(HealthCheck))
        @given(cases(sizes))
        def collect(case) -> None:
            cells = case.state.block_tables.size + case.state.past_rows.size
            assume(cells <= CORPUS_MAX_CELLS)
            data = case.state.to_dict()
            data["max_num_batched_tokens"] = max(SHARED_BUFFER, data["max_num_batched_tokens"])
            states.append(data)

        collect()
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
