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

import collections
import random
import re
import threading
from typing import Any

from validation.errors import MissingDependency

_init_lock = threading.Lock()
_factory: Any = None
_matrix_cache: dict[str, Any] = {}
_block_is_latin_ext_additional: dict[str, bool] = {}
_LATIN = re.compile("[A-z]")
_SPACES = re.compile(" {2,}")
_MAX_TEXT_LENGTH = 10000  # Detector.max_text_length's default
_N_TRIAL = 7  # Detector.n_trial's default
_normalised: dict[str, str] = {}
_normal_ords: dict[int, str] = {}
_word_memo: dict[tuple[str, bool], tuple[str, ...]] = {}


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
    ngrams = _extract_ngrams(_cleaned(text), fac.word_lang_prob_map)
    if not ngrams:
        return None
    langs = fac.langlist
    n_langs = len(langs)
    rnd = random.Random()
    rnd.seed(fac.seed)
    getrandbits, gauss = rnd.getrandbits, rnd.gauss
    count = len(ngrams)
    bits = count.bit_length()
    total = np.zeros(n_langs)
    for _ in range(_N_TRIAL):
        prob = np.full(n_langs, 1.0 / n_langs)
        weight = (Detector.ALPHA_DEFAULT + gauss(0.0, 1.0) * Detector.ALPHA_WIDTH) / Detector.BASE_FREQ
        i = 0
        while True:
            # random.Random.choice(ngrams), inlined: CPython draws getrandbits(k) until below len
            pick = getrandbits(bits)
            while pick >= count:
                pick = getrandbits(bits)
            prob *= weight + _row(fac, ngrams[pick])
            if i % 5 == 0:
                prob /= sum(prob.tolist())
                if prob.max() > Detector.CONV_THRESHOLD or i >= Detector.ITERATION_LIMIT:
                    break
            i += 1
        total += prob / _N_TRIAL
    ranked = [(p, k) for k, p in enumerate(total.tolist()) if p > Detector.PROB_THRESHOLD]
    if not ranked:
        return str(Detector.UNKNOWN_LANG)
    best = max(p for p, _ in ranked)  # langdetect's stable sort keeps the first of equal ones
    return str(langs[next(k for p, k in ranked if p == best)])


def _cleaned(text: str) -> str:
    """``Detector.append`` then ``Detector.cleaning_text``, with regexes and counts instead of loops."""
    from langdetect.detector import Detector
    from langdetect.utils.ngram import NGram
    from langdetect.utils.unicode_block import unicode_block

    text = Detector.URL_RE.sub(" ", text)
    text = Detector.MAIL_RE.sub(" ", text)
    text = _SPACES.sub(" ", NGram.normalize_vi(text)[:_MAX_TEXT_LENGTH])
    latin = len(_LATIN.findall(text))
    non_latin = 0
    for char, count in collections.Counter(text).items():
        if char >= "\u0300" and not ("A" <= char <= "z"):
            extended = _block_is_latin_ext_additional.get(char)
            if extended is None:
                extended = _block_is_latin_ext_additional[char] = (
                    unicode_block(char) == "Latin Extended Additional")
            if not extended:
                non_latin += count
    if latin * 2 < non_latin:
        text = _LATIN.sub("", text)
    return text


def _extract_ngrams(cleaned: str, known: Any) -> list[str]:
    """langdetect's ``Detector._extract_ngrams``, computed word by word with a memo.

    langdetect's ``NGram`` buffer restarts after every space, so the n-grams a word yields depend only
    on the word (after per-character normalisation) and on whether a space follows it: within
    `` word `` each position yields its 1-, 2- and 3-gram ending there when the profile knows it,
    except where it and the previous character are both upper case (langdetect's "capital word"
    state). Same n-grams in the same order as langdetect, at dictionary-lookup cost for known words.
    """
    normalised = cleaned.translate(_normal_table(cleaned))
    pieces = normalised.split(" ")
    last = len(pieces) - 1
    found: list[str] = []
    for index, word in enumerate(pieces):
        if word:
            found.extend(_word_ngrams(word, index < last, known))
    return found


def _normal_table(textual: str) -> dict[int, str]:
    """``str.translate`` table of ``NGram.normalize`` for the characters of ``textual`` (memoised)."""
    from langdetect.utils.ngram import NGram

    for char in set(textual) - _normalised.keys():
        _normalised[char] = _normal_ords[ord(char)] = NGram.normalize(char)
    return _normal_ords


def _word_ngrams(word: str, space_follows: bool, known: Any) -> tuple[str, ...]:
    key = (word, space_follows)
    cached = _word_memo.get(key)
    if cached is None:
        padded = " " + word + (" " if space_follows else "")
        out = []
        for j in range(1, len(padded)):
            char = padded[j]
            if char.isupper() and padded[j - 1].isupper():
                continue
            if char != " " and char in known:
                out.append(char)
            if padded[j - 1:j + 1] in known:
                out.append(padded[j - 1:j + 1])
            if j >= 2 and padded[j - 2:j + 1] in known:
                out.append(padded[j - 2:j + 1])
        cached = _word_memo[key] = tuple(out)
    return cached


def _row(fac: Any, word: str) -> Any:
    """The n-gram's profile as a float64 array, converted once per process."""
    row = _matrix_cache.get(word)
    if row is None:
        import numpy as np

        row = _matrix_cache[word] = np.asarray(fac.word_lang_prob_map[word], dtype=np.float64)
    return row
