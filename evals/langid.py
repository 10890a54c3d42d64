"""langdetect's ``detect`` with seed 0, re-computed with numpy for speed, same answer bit for bit.

The reference spends most of its time in langdetect's probability loop: seven trials, each multiplying
a 55-entry list of floats by a random n-gram's profile, in pure Python. The loop here draws the same
random numbers from the same ``random.Random`` seeded with ``DetectorFactory.seed = 0`` and performs
the same IEEE operations element by element (numpy's elementwise ``*`` and ``/`` round exactly as
Python's floats do; the normalising sum stays Python's left-to-right ``sum``), so every probability,
and so every verdict, is identical. Text cleaning and n-gram extraction are langdetect's own code, and
the profiles are langdetect's own factory (its language order is part of the arithmetic).
"""

from __future__ import annotations

import threading
from typing import Any

from validation.errors import MissingDependency

_init_lock = threading.Lock()
_factory: Any = None
_matrix_cache: dict[str, Any] = {}


def factory() -> Any:
    """langdetect's module-level factory, seeded with 0 and loaded exactly once (thread-safe)."""
    global _factory
    if _factory is None:
        with _init_lock:
            if _factory is None:
                try:
                    from langdetect import DetectorFactory, detector_factory
                except ImportError as exc:
                    raise MissingDependency("langdetect", "ifeval", "IFEval language checks") from exc
                DetectorFactory.seed = 0
                detector_factory.init_factory()
                _factory = detector_factory._factory
    return _factory


def reference_detect(text: str) -> str | None:
    """langdetect's own ``detect`` (seed 0), kept to prove ``detect`` equal to it in tests."""
    from langdetect.lang_detect_exception import LangDetectException

    detector = factory().create()
    detector.append(text)
    try:
        return str(detector.detect())
    except LangDetectException:
        return None


def detect(text: str) -> str | None:
    """The language langdetect (seed 0) gives ``text``; None where it raises (no features)."""
    import numpy as np
    from langdetect.detector import Detector

    fac = factory()
    detector = fac.create()
    detector.append(text)
    detector.cleaning_text()
    ngrams = detector._extract_ngrams()
    if not ngrams:
        return None
    langs = fac.langlist
    n_langs = len(langs)
    unique = sorted(set(ngrams))
    position = {w: k for k, w in enumerate(unique)}
    picks = [position[w] for w in ngrams]
    profiles = np.stack([_row(fac, w) for w in unique])
    rnd = detector.random
    rnd.seed(detector.seed)
    total = np.zeros(n_langs)
    n_trial = detector.n_trial
    for _ in range(n_trial):
        prob = np.full(n_langs, 1.0 / n_langs)
        alpha = detector.alpha + rnd.gauss(0.0, 1.0) * Detector.ALPHA_WIDTH
        factors = (alpha / Detector.BASE_FREQ) + profiles
        i = 0
        while True:
            prob *= factors[rnd.choice(picks)]
            if i % 5 == 0:
                prob /= sum(prob.tolist())
                if prob.max() > Detector.CONV_THRESHOLD or i >= Detector.ITERATION_LIMIT:
                    break
            i += 1
        total += prob / n_trial
    ranked = [(p, k) for k, p in enumerate(total.tolist()) if p > Detector.PROB_THRESHOLD]
    if not ranked:
        return str(Detector.UNKNOWN_LANG)
    best = max(p for p, _ in ranked)
    return str(langs[next(k for p, k in ranked if p == best)])


def _row(fac: Any, word: str) -> Any:
    """The n-gram's profile as a float64 array, converted once per process."""
    row = _matrix_cache.get(word)
    if row is None:
        import numpy as np

        row = _matrix_cache[word] = np.asarray(fac.word_lang_prob_map[word], dtype=np.float64)
    return row
