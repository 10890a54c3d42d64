"""The Paddle models and the CUDA kernels agree bit for bit on a corpus of 2,000 generated states.

The CUDA digests are recorded on a GPU machine (``python -m validation.cross_backend record
--backend cuda``) and committed; here the committed Paddle digests are first shown to be current
(recomputed on a prefix of the corpus), then compared with the GPU's, state by state.
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
def test_committed_paddle_digests_are_current(tmp_path: Path) -> None:
    prefix = tmp_path / "prefix.jsonl.gz"
    import gzip  # noqa: PLC0415

    with gzip.open(CORPUS / "states.jsonl.gz", "rt") as src, gzip.open(prefix, "wt") as dst:
        for _, line in zip(range(PREFIX), src):
            dst.write(line)
    out = tmp_path / "paddle.jsonl"
    cross_backend.record("paddle", prefix, out)
    committed = tmp_path / "committed.jsonl"
    committed.write_text("\n".join(PADDLE.read_text().splitlines()[:PREFIX]) + "\n")
    assert cross_backend.compare(out, committed) == []


@pytest.mark.skipif(not CUDA.exists(), reason="no CUDA digests recorded yet (record them on a GPU machine)")
def test_paddle_models_and_cuda_kernels_are_bit_identical() -> None:
    assert cross_backend.compare(PADDLE, CUDA) == []
