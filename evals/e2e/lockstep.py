"""Several engines on one model, stepped together, with one forward per group of identical runs.

``dsa-validate e2e`` runs one workload with three slot mappings. Where two runs would compute exactly the
same thing, computing it twice proves nothing more (the forward is deterministic), and the model's forward
is nearly all of the time. So runs whose caches hold the same entries and whose step inputs (token ids,
positions, every layer's slots) are equal share one forward and one cache; the moment their inputs differ,
the cache is copied and each goes on alone. Runs that went apart merge again when their next inputs are
equal and their caches are bit-identical, every slot of every layer's K, V and index-key caches (not
just the entries a request can read now: a wrong mapping may later read a slot nobody wrote, and what it
finds there must be what it would have found alone). ``share=False`` runs every engine on its own caches;
the tests check that both give the same report.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

from evals.engine.model_runner import SlotMappingFailure, StepBatch, StepSlots, forward


class Lockstep:
    def __init__(self, engines: list[Any], *, share: bool = True) -> None:
        self.engines = engines
        self.share = share
        self.forwards = 0
        if share:
            for engine in engines[1:]:
                engine.caches = engines[0].caches

    def step(self) -> list[SlotMappingFailure | None]:
        """Step every engine once; each one's failure (or None). ``engine.last_record`` holds the step."""
        failures: list[SlotMappingFailure | None] = [None] * len(self.engines)
        pending: list[Any] = [None] * len(self.engines)
        for i, engine in enumerate(self.engines):
            try:
                pending[i] = engine.prepare_step()
            except SlotMappingFailure as exc:
                failures[i] = exc
        live = [i for i, p in enumerate(pending) if p is not None]
        prints = {i: fingerprint(pending[i].batch, pending[i].slots) for i in live}
        if self.share:
            self._merge(live, prints)
            self._split(live, prints)
        done: dict[tuple[int, bytes], Any] = {}
        for i in live:
            engine, p = self.engines[i], pending[i]
            key = (id(engine.caches), prints[i])
            if key not in done:
                try:
                    done[key] = forward(engine.model, engine.caches, p.batch, p.slots)
                except SlotMappingFailure as exc:
                    done[key] = exc
                self.forwards += 1
            result = done[key]
            if isinstance(result, SlotMappingFailure):
                failures[i] = result
            else:
                engine.complete_step(p, result.copy())
        return failures

    def _merge(self, live: list[int], prints: dict[int, bytes]) -> None:
        for a in live:
            for b in live:
                ea, eb = self.engines[a], self.engines[b]
                if a < b and ea.caches is not eb.caches and prints[a] == prints[b]:
                    if caches_equal(ea.model, ea.caches, eb.caches):
                        old = eb.caches
                        for engine in self.engines:
                            if engine.caches is old:
                                engine.caches = ea.caches

    def _split(self, live: list[int], prints: dict[int, bytes]) -> None:
        owners: dict[int, dict[bytes, Any]] = {}
        for i in live:
            engine = self.engines[i]
            groups = owners.setdefault(id(engine.caches), {})
            if not groups:
                groups[prints[i]] = engine.caches
            elif prints[i] not in groups:
                groups[prints[i]] = clone_caches(engine.model, engine.caches)
            engine.caches = groups[prints[i]]


def fingerprint(batch: StepBatch, slots: StepSlots) -> bytes:
    """Everything of a step that can differ between runs of one schedule: token ids, positions, slots."""
    digest = hashlib.blake2b(digest_size=20)
    digest.update(batch.token_ids.tobytes())
    digest.update(slots.positions.tobytes())
    for indexer, attention in slots.layer_slots:
        digest.update(indexer.tobytes())
        digest.update(attention.tobytes())
    return digest.digest()


def clone_caches(model: Any, caches: Any) -> Any:
    if hasattr(model, "clone_caches"):
        return model.clone_caches(caches)
    return replace(caches, key=[t.clone() for t in caches.key], value=[t.clone() for t in caches.value],
                   index_key=[t.clone() for t in caches.index_key])


def caches_equal(model: Any, a: Any, b: Any) -> bool:
    """Whether two caches are bit-identical in every slot of every layer and cache."""
    if hasattr(model, "caches_equal"):
        return model.caches_equal(a, b)
    for name in ("key", "value", "index_key"):
        for ta, tb in zip(getattr(a, name), getattr(b, name)):
            if ta.numpy().tobytes() != tb.numpy().tobytes():
                return False
    return True
