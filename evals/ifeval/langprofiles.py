"""langdetect's language profiles, as langdetect itself loads them, kept in a small per-user cache.

Why: ``langdetect``'s factory parses 55 JSON profiles into a dict of 87,598 lists of 55 Python floats
on every start: about 0.3-0.7 s and 60 MB, more than scoring 541 responses costs, and paid by every
``dsa-validate ifeval score`` process. The detector (``langid.py``) needs only each n-gram's row of
probabilities. So the first process loads the factory as langdetect does and stores what it loaded,
sparsely (184,129 non-zero probabilities: the floats themselves, bit for bit, never recomputed), under
``~/.cache/dsa-validation``; later processes read that in a few milliseconds. The cache's name carries
langdetect's version and a digest of its profile files, so a different langdetect gets its own.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from validation.errors import MissingDependency

SEED = 0  # langdetect's DetectorFactory.seed as the scorer fixes it


@dataclass(frozen=True)
class Profiles:
    """Each n-gram's row number, the languages in langdetect's order, the rows in CSR form."""

    rows: dict[str, int]
    langlist: tuple[str, ...]
    indptr: Any  # int64, len(rows) + 1
    langs: Any  # int16 column (language) of each stored probability
    probs: Any  # float64, langdetect's own values

    def dense(self, row_ids: Any) -> Any:
        """The rows' full probability vectors (zeros where a language lacks the n-gram)."""
        import numpy as np

        row_ids = np.asarray(row_ids, dtype=np.int64)
        out = np.zeros((len(row_ids), len(self.langlist)), dtype=np.float64)
        starts, ends = self.indptr[row_ids], self.indptr[row_ids + 1]
        lengths = ends - starts
        if lengths.sum():
            which = np.repeat(np.arange(len(row_ids)), lengths)
            positions = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
            out[which, self.langs[positions]] = self.probs[positions]
        return out


@functools.lru_cache(maxsize=1)
def load() -> Profiles:
    """The profiles, from the cache when it is there, else from langdetect (and then cached)."""
    import numpy as np

    path = _cache_path()
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as stored:
                return _profiles(stored["grams"].tolist(), stored["langlist"].tolist(), stored["indptr"],
                                 stored["langs"], stored["probs"])
        except (OSError, ValueError, KeyError):
            pass  # unreadable (a partial copy, another numpy): rebuilt below
    grams, langlist, indptr, langs, probs = _from_langdetect()
    _store(path, grams, langlist, indptr, langs, probs)
    return _profiles(grams, langlist, indptr, langs, probs)


def _profiles(grams: list[str], langlist: list[str], indptr: Any, langs: Any, probs: Any) -> Profiles:
    return Profiles(dict(zip(grams, range(len(grams)))), tuple(langlist), indptr, langs, probs)


def _from_langdetect() -> tuple[list[str], list[str], Any, Any, Any]:
    import numpy as np

    from evals.ifeval.langid import factory  # langdetect's own load, seeded, under langid's lock

    fac = factory()
    grams = list(fac.word_lang_prob_map)
    indptr = [0]
    langs: list[int] = []
    probs: list[float] = []
    for gram in grams:
        for lang, prob in enumerate(fac.word_lang_prob_map[gram]):
            if prob != 0.0:
                langs.append(lang)
                probs.append(prob)
        indptr.append(len(probs))
    return (grams, list(fac.langlist), np.array(indptr, dtype=np.int64), np.array(langs, dtype=np.int16),
            np.array(probs, dtype=np.float64))


def _cache_path() -> Path:
    from importlib import metadata

    from evals.ifeval.text import cache_root

    try:
        import langdetect
    except ImportError as exc:
        raise MissingDependency("langdetect", "ifeval", "IFEval language checks") from exc
    profiles = Path(langdetect.__file__).parent / "profiles"
    digest = hashlib.sha256()
    for entry in sorted(os.scandir(profiles), key=lambda e: e.name):
        stat = entry.stat()
        digest.update(f"{entry.name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    version = metadata.version("langdetect")
    return cache_root() / f"langdetect-{version}-profiles-{digest.hexdigest()[:16]}.npz"


def _store(path: Path, grams: list[str], langlist: list[str], indptr: Any, langs: Any, probs: Any) -> None:
    import numpy as np

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".profiles-", suffix=".npz", dir=path.parent)
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, grams=np.array(grams), langlist=np.array(langlist), indptr=indptr, langs=langs,
                     probs=probs)
        os.replace(tmp, path)  # atomic: a concurrent reader sees the old state or the whole file
    except OSError:
        pass  # a read-only home: every process loads langdetect itself, answers unchanged
