"""A numpy stand-in for the engine's model, with the forward contract of ``evals.engine.model.DSAModel``.

Each layer and consumer has a slot-indexed cache; every launched row (padding included) writes a value
naming its token and position at its slot, negative slots are skipped, a slot past the cache raises
``IndexError``; real rows then read their context back through the block tables, and their logits are a
deterministic function of exactly what they read. So the engine, the runner and the e2e triage can be
tested in milliseconds, and a wrong slot changes logits the way a real model's would.
"""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

import numpy as np


class FakeModel:
    def __init__(self, num_layers: int = 2, vocab_size: int = 64, context: int = 4096) -> None:
        self.num_layers = num_layers
        self.vocab_size = vocab_size
        self.config = SimpleNamespace(num_layers=num_layers, max_position_embeddings=context, vocab_size=vocab_size)
        self.calls = 0

    def new_caches(self, num_blocks: int, block_size: int) -> np.ndarray:
        return np.full((self.num_layers, 2, num_blocks * block_size), -1, dtype=np.int64)

    def clone_caches(self, caches: np.ndarray) -> np.ndarray:
        return caches.copy()

    def caches_equal(self, a: np.ndarray, b: np.ndarray) -> bool:
        return bool(np.array_equal(a, b))

    def forward(self, caches, token_ids, positions, layer_slots, token_request, token_context, block_tables,
                block_size, logits_rows):
        self.calls += 1
        size = caches.shape[2]
        launched = token_ids.shape[0]
        values = token_ids.astype(np.int64) * 1_000_003 + positions.astype(np.int64)
        for layer, pair in enumerate(layer_slots):
            for c, slots in enumerate(pair):
                assert slots.shape[0] == launched
                live = np.flatnonzero(slots >= 0)
                past = live[slots[live] >= size]
                if past.size:
                    row = int(past[0])
                    raise IndexError(f"layer {layer} {('indexer', 'attention')[c]} row {row} slot {int(slots[row])} "
                                     f"past the cache of {size}")
                caches[layer, c, slots[live]] = values[live]  # repeated slots: the later row wins
        out = np.zeros((len(logits_rows), self.vocab_size), np.float32)
        for i, row in enumerate(logits_rows):
            b, ctx = int(token_request[row]), int(token_context[row])
            p = np.arange(ctx)
            slots = block_tables[b, p // block_size].astype(np.int64) * block_size + p % block_size
            seen = caches[:, :, slots]
            digest = hashlib.blake2b(seen.tobytes() + int(positions[row]).to_bytes(8, "little", signed=True),
                                     digest_size=8).digest()
            rng = np.random.default_rng(int.from_bytes(digest, "little"))
            out[i] = rng.standard_normal(self.vocab_size).astype(np.float32)
        return out
