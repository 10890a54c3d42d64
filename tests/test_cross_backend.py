"""The cross-backend digests, and exactly what a machine without a GPU can check of them.

The Paddle models and the CUDA kernels are proven bit-identical on a corpus of 2,000 generated
states by ``benchmarks/gpu_run.sh`` on a GPU: it re-records the CUDA digests there and compares them
with the committed Paddle digests (the date of the last run is in BENCHMARKS.md). Here, on CPU:

- the Paddle models still produce the committed Paddle digests (recomputed on the first ``PREFIX``
  corpus states): this is the part of the proof CI re-runs;
- the committed CUDA digests equal the committed Paddle digests: two files compared, which fails
  only when one is edited or re-recorded without the other; it says nothing about the CUDA kernels
  as they are now, which only the GPU job checks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from support import ROOT, requires_paddle
from validation import cross_backend, seam

CORPUS = ROOT / "fixtures" / "corpus"
PADDLE = CORPUS / "paddle_digests.jsonl"
CUDA = CORPUS / "cuda_digests.jsonl"
PREFIX = 120


def _obs(values: list[int], dtype=np.int64) -> seam.Observation:
    arr = np.asarray(values, dtype=dtype)
    return seam.Observation(position_ids=np.asarray([1], np.int32), layers=[{"indexer": arr, "attention": arr}])


def test_digest_sees_one_value_one_dtype_and_one_hazard() -> None:
    base = cross_backend.digest(_obs([1, 2, 3]))
    assert base == cross_backend.digest(_obs([1, 2, 3]))
    assert base != cross_backend.digest(_obs([1, 2, 4]))
    assert base != cross_backend.digest(_obs([1, 2, 3], np.int32))
    hazard = _obs([1, 2, 3])
    hazard.hazards.append("x wrote 1 entries past its buffer")
    assert base != cross_backend.digest(hazard)
    assert cross_backend.digest(seam.Observation(error="KernelFault: a")) == \
        cross_backend.digest(seam.Observation(error="KernelFault: b"))


def test_every_corpus_state_is_valid_and_shares_one_buffer_size() -> None:
    states = list(cross_backend.read_corpus(CORPUS / "states.jsonl.gz"))
    assert len(states) == 2000
    assert {s.max_num_batched_tokens for s in states} == {cross_backend.SHARED_BUFFER}


@requires_paddle
def test_paddle_models_still_produce_the_committed_paddle_digests(tmp_path: Path) -> None:
    prefix = tmp_path / "prefix.jsonl.gz"
    import gzip  # noqa: PLC0415

    with gzip.open(CORPUS / "states.jsonl.gz", "rt") as src, gzip.open(prefix, "wt") as dst:
        for _, line in zip(range(PREFIX), src):
            dst.write(line)
    out = tmp_path / "paddle.jsonl"
    cross_backend.record("paddle", prefix, out)
    committed = tmp_path / "committed.jsonl"
    committed.write_text("\n".join(PADDLE.read_text().splitlines()[:PREFIX]) + "\n")
    assert cross_backend.compare(out, committed) == [], \
        "the Paddle models changed: re-record the Paddle digests, then the CUDA ones on a GPU (benchmarks/gpu_run.sh)"


@pytest.mark.skipif(not CUDA.exists(), reason="no CUDA digests recorded yet (record them on a GPU machine)")
def test_committed_cuda_digests_equal_the_committed_paddle_digests() -> None:
    """A consistency check of two committed files, not of the CUDA kernels (see the module docstring)."""
    assert cross_backend.compare(PADDLE, CUDA) == [], \
        "the committed digest files disagree: re-record the CUDA digests on a GPU (benchmarks/gpu_run.sh)"
