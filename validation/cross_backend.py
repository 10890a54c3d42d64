"""Prove the Paddle models and the CUDA kernels bit-identical, across machines.

Paddle-GPU cannot run where the GPU is, so the two backends never share a process. Instead each
records, per state of a shared corpus and per code path, a digest of every byte every consumer
reads (dtype, shape, values, hazards, failure kind); the digests are compared afterwards. Each
path runs twice over the corpus: a fresh instance per state, and one instance across all states
in order (persistent buffers and their stale tails included). The corpus itself is drawn by the property
suite's strategies (``python -m properties.corpus``); this module only reads it, digests and compares.

    python -m validation.cross_backend record --backend paddle --corpus fixtures/corpus/states.jsonl.gz --out paddle.jsonl
    python -m validation.cross_backend compare paddle.jsonl cuda.jsonl
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from validation import seam
from validation.state import BatchState

PATHS = ("legacy", "single_step", "chunked_fix", "get_position_ids", "fused", "tail_reset", "tail_reset_fused")
LAYERS = 2
# Every corpus state gets this buffer size, so one instance can run the whole corpus in order.
SHARED_BUFFER = 1 << 16


def digest(obs: seam.Observation) -> str:
    """sha256 of everything an observation holds that a consumer could read (first 64 bits, hex)."""
    h = hashlib.sha256()
    if obs.error is not None:
        h.update(b"error:" + obs.error.split(":")[0].encode())
        return h.hexdigest()[:16]
    arrays = [obs.position_ids] + [layer[c] for layer in obs.layers for c in seam.CONSUMERS]
    for arr in arrays:
        arr = np.ascontiguousarray(arr)
        h.update(f"{arr.dtype.str}{arr.shape}".encode())
        h.update(arr.astype(arr.dtype.newbyteorder("<")).tobytes())
    for hazard in obs.hazards:
        h.update(hazard.encode())
    return h.hexdigest()[:16]


def read_corpus(path: Path) -> Iterator[BatchState]:
    with gzip.open(path, "rt") as fh:
        for line in fh:
            yield BatchState.from_dict(json.loads(line))


def record(backend: str, corpus: Path, out: Path) -> int:
    """Digest every path's output on every corpus state, fresh and sequential; one JSON line per state."""
    states = list(read_corpus(corpus))
    rows: list[dict] = [{"index": i} for i in range(len(states))]
    for name in PATHS:
        impl = seam.resolve(name, backend=backend, num_layers=LAYERS)
        running = impl.new()
        for i, state in enumerate(states):
            rows[i][f"{name}/fresh"] = digest(seam.observe(impl.new(), state.step_inputs(), LAYERS))
            rows[i][f"{name}/sequential"] = digest(seam.observe(running, state.step_inputs(), LAYERS))
    with out.open("w") as fh:
        for row in rows:
            fh.write(json.dumps(row, sort_keys=True) + "\n")
    return len(rows)


def compare(a: Path, b: Path) -> list[str]:
    """Lines naming every (state, path, mode) whose digests differ; empty when bit-identical."""
    rows_a = [json.loads(line) for line in a.read_text().splitlines()]
    rows_b = [json.loads(line) for line in b.read_text().splitlines()]
    if len(rows_a) != len(rows_b):
        return [f"{a} has {len(rows_a)} states, {b} has {len(rows_b)}"]
    return [f"state {ra['index']} {key}: {ra[key][:12]} != {rb.get(key, '-')[:12]}"
            for ra, rb in zip(rows_a, rows_b) for key in sorted(ra) if key != "index" and ra[key] != rb.get(key)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m validation.cross_backend", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("record")
    r.add_argument("--backend", choices=seam.BACKENDS, required=True)
    r.add_argument("--corpus", type=Path, required=True)
    r.add_argument("--out", type=Path, required=True)
    m = sub.add_parser("compare")
    m.add_argument("a", type=Path)
    m.add_argument("b", type=Path)
    args = parser.parse_args(argv)
    if args.command == "record":
        print(f"{record(args.backend, args.corpus, args.out)} states digested with {args.backend} into {args.out}")
    else:
        diffs = compare(args.a, args.b)
        print("\n".join(diffs) if diffs else f"bit-identical: {args.a} == {args.b}")
        return 1 if diffs else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
