"""langdetect's ``detect`` with seed 0, re-computed with numpy for many texts at once, same answers.

The reference spends most of its time in langdetect's probability loop: seven trials, each multiplying
a 55-entry list of floats by a random n-gram's profile, in pure Python, one text at a time. Here:

* the random numbers: langdetect re-seeds a ``random.Random`` with ``DetectorFactory.seed = 0`` for
  every text, so all texts read one Mersenne-Twister word stream, generated once; ``choice`` and
  ``gauss`` are decoded from the words exactly as CPython does (``getrandbits`` rejection sampling,
  53-bit ``random()``, the cached second gauss value);
* the arithmetic: numpy performs the same IEEE operations element by element in the same order
  (products as a left fold, the normalising sum left to right as Python's ``sum``), for every text
  still running at once, so every probability is bit-identical;
* the work: a text stops once its answer can no longer change (after four or more trials, its leading
  language is ahead by more than the trials left can add), which cannot alter the answer;
* text cleaning and n-gram extraction are langdetect's rules, re-expressed with regexes, counts and a
  per-word memo; the profiles are langdetect's own, as its factory loads them (its language order is
  part of the maths), read from a per-user cache after the first load (``langprofiles.py``).

``tests/test_ifeval_fast_paths.py`` compares the answers with langdetect's on thousands of texts.
"""

from __future__ import annotations

import array
import collections
import math
import random
import re
import sys
import threading
from collections.abc import Sequence
from typing import Any

from evals.ifeval import langprofiles
from validation.errors import MissingDependency

_init_lock = threading.RLock()  # profiles() may load the factory while holding it
_factory: Any = None
_block_is_latin_ext_additional: dict[str, bool] = {}
_LATIN = re.compile("[A-z]")
_SPACES = re.compile(" {2,}")
_HIGH = re.compile("[^\x00-\u02ff]")
_MAX_TEXT_LENGTH = 10000  # Detector.max_text_length's default
_N_TRIAL = 7  # Detector.n_trial's default
_normalised: dict[str, str] = {}
_normal_ords: dict[int, str] = {}
_DECIDABLE_AFTER = 4  # k trials can outweigh the 7 - k left only when k > 7 - k
_MARGIN = 1e-9  # far above the rounding of a few additions of numbers <= 1
_FIRST_SPAN = 512  # stream words decoded for every text up front; later windows as each text needs
_FAR = 1 << 62  # a stream position past any decoded one (table padding)
_TWOPI = 2.0 * math.pi  # random.TWOPI
_stream: Any = None
_matrix: Any = None
_profile_rows: list[Any] = []
_gram_ids: dict[str, int] = {}
_ids_spaced: dict[str, bytes] = {}
_ids_final: dict[str, bytes] = {}


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
                DetectorFactory.seed = langprofiles.SEED
                detector_factory.init_factory()
                _factory = detector_factory._factory
    return _factory


def profiles() -> Any:
    """langdetect's profiles (``langprofiles.load``), loaded once per process (thread-safe)."""
    with _init_lock:
        return langprofiles.load()


def prepare() -> None:
    """Load the profiles and generate the random stream now (before a fork, so a child starts warm)."""
    profiles()
    _words(1 << 16)


def clear_memos() -> None:
    """Forget the per-word and per-n-gram memos (cold-cache benchmarks); the profiles stay loaded."""
    global _matrix
    for memo in (_normalised, _normal_ords, _gram_ids, _ids_spaced, _ids_final):
        memo.clear()
    _profile_rows.clear()
    _matrix = None


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
    return detect_many([text])[0]


def detect_many(texts: Sequence[str]) -> list[str | None]:
    """``detect`` of every text, computed together: one numpy step serves every text still running.

    langdetect re-seeds its ``random.Random`` with ``DetectorFactory.seed`` for every text, so every
    text reads the same stream of 32-bit Mersenne-Twister words; texts differ only in how many words
    each draw takes (``choice`` rejects ``getrandbits(k)`` values >= the n-gram count) and in how many
    draws each trial needs. The words are generated once; draws are decoded from them with array
    operations; the probability updates of all texts of one trial advance in lock step, each text
    stopping where langdetect's convergence test stops it. Every float operation is the one langdetect
    performs, in the same order (products elementwise, the normalising sum left to right), so every
    probability is bit-identical and so is every answer.
    """
    import numpy as np
    from langdetect.detector import Detector

    loaded = profiles()
    results: list[str | None] = [None] * len(texts)
    # langdetect's answer depends on the text only through its n-gram sequence: texts with the same
    # sequence (loose variants often differ only in characters that yield no n-gram) are detected once
    row_of: dict[bytes, int] = {}
    members: list[list[int]] = []
    lengths: list[int] = []
    chunks: list[bytes] = []
    for index, one in enumerate(texts):
        ids = _ngram_ids(_cleaned(one), loaded.rows)
        if not ids:
            continue
        row = row_of.get(ids)
        if row is None:
            row = row_of[ids] = len(chunks)
            members.append([])
            lengths.append(len(ids) // 8)
            chunks.append(ids)
        members[row].append(index)
    if not chunks:
        return results
    profile = _profile_matrix()
    n_rows = len(chunks)
    counts = np.array(lengths, dtype=np.int64)
    offsets = np.zeros(n_rows, dtype=np.int64)
    np.cumsum(counts[:-1], out=offsets[1:])
    flat_ids = np.frombuffer(b"".join(chunks), dtype=np.int64)
    shifts = np.array([32 - int(c).bit_length() for c in counts], dtype=np.uint32)
    total = _run_trials(counts, shifts, offsets, flat_ids, profile)
    best = total.argmax(axis=1)  # langdetect's stable descending sort keeps the first of equal ones
    top = total[np.arange(n_rows), best]
    langs = loaded.langlist
    for r, indices in enumerate(members):
        answer = str(langs[int(best[r])]) if top[r] > Detector.PROB_THRESHOLD else str(Detector.UNKNOWN_LANG)
        for index in indices:
            results[index] = answer
    return results


def _run_trials(counts: Any, shifts: Any, offsets: Any, flat_ids: Any, profile: Any) -> Any:
    """All seven trials of every text; returns langdetect's ``langprob`` per text (rows).

    Texts advance in lock step, two blocks per numpy step, each block five draws then a normalisation
    (langdetect normalises and tests convergence at draws 1, 6, 11, ...). A text whose trial ends after
    a step's first block keeps that block's probabilities and gives back the second block's draws;
    either way it starts its next trial at the end of the step (gauss weight, first draw,
    normalisation), which keeps it in step with the others. Each text's own sequence of operations is
    exactly langdetect's: a block's five products are one ``multiply.reduce`` over
    [prob, f1, ..., f5], a left fold, element by element.
    """
    import numpy as np
    from langdetect.detector import Detector

    n_rows, n_langs = len(counts), profile.shape[1]
    total = np.zeros((n_rows, n_langs))
    trial = np.zeros(n_rows, dtype=np.int64)
    gauss_next = [0.0] * n_rows
    uniform = 1.0 / n_langs
    alpha, width, base = Detector.ALPHA_DEFAULT, Detector.ALPHA_WIDTH, Detector.BASE_FREQ
    threshold = Detector.CONV_THRESHOLD
    limit_steps = Detector.ITERATION_LIMIT // 5  # blocks of five after the first draw
    # each text's next draws: stream positions, profile ids, how many, the window's first position
    table = list(_accepted(np.zeros(n_rows, dtype=np.int64), counts, shifts, offsets, flat_ids, _FIRST_SPAN))
    table.append(np.zeros(n_rows, dtype=np.int64))

    # per active text: its row, [prob, ten factors], weight, next draw (index into its table row), and
    # the block its trial started at
    rows = np.arange(n_rows)
    buf = np.empty((n_rows, 11, n_langs))
    weight = np.empty(n_rows)
    nxt = np.zeros(n_rows, dtype=np.int64)
    began = np.zeros(n_rows, dtype=np.int64)
    four = np.arange(4)
    ten = np.arange(10)
    step = 0

    def ensure(local: Any, more: int) -> None:
        """Texts of ``local`` that could run past their window of draws get the next window."""
        width = table[0].shape[1]
        span = 2 * width + 64  # at least half of the words are draws: about ``width`` draws
        while True:
            short = local[nxt[local] + more > table[2][rows[local]]]
            if not len(short):
                return
            r = rows[short]
            q = nxt[short]
            begin = np.where(q > 0, table[0][r, np.maximum(q - 1, 0)] + 1, table[3][r])
            positions, gids, how_many = _accepted(begin, counts[r], shifts[r], offsets[r], flat_ids,
                                                  2 * width + 64)
            used = min(width, positions.shape[1])
            table[0][r] = _FAR
            table[0][r, :used] = positions[:, :used]
            table[1][r, :used] = gids[:, :used]
            table[2][r] = np.minimum(how_many, width)
            table[3][r] = begin
            nxt[short] = 0
            span *= 2  # only for a text still short (never seen), so the loop always ends

    def finish(local: Any) -> Any:
        """Close the current trial of texts ``local``; returns those with trials left.

        A text whose answer can no longer change stops early: each remaining trial adds at most 1/7
        to any language's total and nothing is ever subtracted, so once the leading language is ahead
        of every other by more than (trials left)/7 (with a margin far above rounding) it is the
        final argmax, and above the 0.1 threshold; the remaining trials are skipped.
        """
        r = rows[local]
        total[r] += buf[local, 0] / _N_TRIAL
        trial[r] += 1
        late = local[trial[r] >= _DECIDABLE_AFTER]
        if len(late):
            lr = rows[late]
            top2 = np.partition(total[lr], -2, axis=1)[:, -2:]
            left = (_N_TRIAL - trial[lr]) / _N_TRIAL
            decided = top2[:, 1] - top2[:, 0] > left + _MARGIN
            trial[lr[decided]] = _N_TRIAL
        return local[trial[r] < _N_TRIAL]

    def start(local: Any) -> None:
        """Start the next trial of texts ``local``: weight, first draw, normalisation, convergence."""
        while len(local):
            ensure(local, 6)
            r = rows[local]
            positions, gids = table[0], table[1]
            z = [gauss_next[row] for row in r.tolist()]
            even = np.flatnonzero(trial[r] % 2 == 0)
            if len(even):  # gauss() reads two random() (four words) here: cos now, sin kept for later
                le, re_ = local[even], r[even]
                q = nxt[le]
                # the words follow the trial's last draw (or open the stream); draws skip them
                at = np.where(q > 0, positions[re_, np.maximum(q - 1, 0)] + 1, table[3][re_])
                words = _words(int(at.max()) + 4)
                for k, row, p in zip(even.tolist(), re_.tolist(), at.tolist()):
                    z[k], gauss_next[row] = _gauss_pair(words[p:p + 4].tolist())
                inside = positions[re_[:, None], q[:, None] + four] < (at + 4)[:, None]
                nxt[le] = q + inside.sum(axis=1)
            weight[local] = [(alpha + (0.0 + value * 1.0) * width) / base for value in z]
            fresh = np.full((len(local), n_langs), uniform)
            fresh *= profile[gids[r, nxt[local]]] + weight[local][:, None]
            fresh /= _row_sums(fresh)[:, None]
            buf[local, 0] = fresh
            nxt[local] += 1
            began[local] = step
            done = fresh.max(axis=1) > threshold
            local = finish(local[done]) if done.any() else local[:0]

    def headroom() -> int:
        return int((table[2][rows] - nxt).min()) if len(rows) else 0

    start(np.arange(n_rows))
    live = trial < _N_TRIAL
    if not live.all():
        rows, buf, weight, nxt, began = (x[live] for x in (rows, buf, weight, nxt, began))
    room = headroom()
    oldest = int(began.min()) if len(rows) else 0
    sums = _row_sums if sys.version_info >= (3, 12) else None
    accumulate = np.add.accumulate
    rows_column, weight_cube = rows[:, None], weight[:, None, None]  # views, follow in-place updates
    while len(rows):
        if room < 10:
            ensure(np.arange(len(rows)), 10)
            room = headroom()
        factors = profile[table[1][rows_column, nxt[:, None] + ten]]
        np.add(factors, weight_cube, out=buf[:, 1:])
        first = np.multiply.reduce(buf[:, :6], axis=1)
        first /= (accumulate(first, axis=1)[:, -1:] if sums is None else sums(first)[:, None])
        buf[:, 5] = first
        prob = buf[:, 0]
        np.multiply.reduce(buf[:, 5:], axis=1, out=prob)
        prob /= (accumulate(prob, axis=1)[:, -1:] if sums is None else sums(prob)[:, None])
        nxt += 10
        room -= 10
        step += 2
        early = first.max() > threshold or step - 1 - oldest >= limit_steps
        if early or prob.max() > threshold or step - oldest >= limit_steps:
            if early:
                done_first = (first.max(axis=1) > threshold) | (step - 1 - began >= limit_steps)
                back = np.flatnonzero(done_first)
                buf[back, 0] = first[back]  # its trial ended after the first block: undo the second
                nxt[back] -= 5
            else:
                done_first = np.zeros(len(rows), dtype=bool)
            done = done_first | (prob.max(axis=1) > threshold) | (step - began >= limit_steps)
            start(finish(np.flatnonzero(done)))
            live = trial[rows] < _N_TRIAL
            if not live.all():
                rows, buf, weight, nxt, began = (x[live] for x in (rows, buf, weight, nxt, began))
                rows_column, weight_cube = rows[:, None], weight[:, None, None]
            room = headroom()
            oldest = int(began.min()) if len(rows) else 0
    return total


def _accepted(begin: Any, counts: Any, shifts: Any, offsets: Any, flat_ids: Any,
              span: int) -> tuple[Any, Any, Any]:
    """Each text's ``choice`` draws among the ``span`` words of the stream from its ``begin`` on.

    ``random.choice`` of ``count`` items takes ``getrandbits(count.bit_length())``, the top bits of one
    32-bit word, until the value is below ``count``: a word is a draw of a text exactly when its top
    bits are below the text's n-gram count (the four words each even trial's ``gauss`` reads are
    skipped by the caller). Returns, per text (rows, padded), the stream position of each such word
    and the profile row id of the n-gram it picks, and how many there are.
    """
    import numpy as np

    last = int(begin.max())
    words = _words(last + span)
    if last == int(begin.min()):  # every text from the same word (at the start): no gather needed
        values = words[None, last:last + span] >> shifts[:, None]
    else:
        values = words[begin[:, None] + np.arange(span)] >> shifts[:, None]
    accepted = values < counts[:, None]
    how_many = accepted.sum(axis=1)
    width = int(how_many.max()) + 8
    rows, cols = np.nonzero(accepted)
    first = np.zeros(len(counts), dtype=np.int64)
    np.cumsum(how_many[:-1], out=first[1:])
    rank = np.arange(len(rows)) - first[rows]
    positions = np.full((len(counts), width), _FAR, dtype=np.int64)
    positions[rows, rank] = begin[rows] + cols
    gids = np.zeros((len(counts), width), dtype=np.int64)
    gids[rows, rank] = flat_ids[offsets[rows] + values[rows, cols]]
    return positions, gids, how_many


def _row_sums(prob: Any) -> Any:
    """Python's ``sum`` of each row, in Python's order (left to right; Neumaier-compensated from 3.12)."""
    import numpy as np

    if sys.version_info < (3, 12):
        return np.add.accumulate(prob, axis=1)[:, -1]
    total = prob[:, 0].copy()
    compensation = np.zeros(len(prob))
    for j in range(1, prob.shape[1]):
        x = prob[:, j]
        t = total + x
        compensation += np.where(np.abs(total) >= np.abs(x), (total - t) + x, (x - t) + total)
        total = t
    fix = (compensation != 0) & np.isfinite(compensation)
    return np.where(fix, total + compensation, total)


def _gauss_pair(words: list[int]) -> tuple[float, float]:
    """``random.gauss``'s two values from four 32-bit words (two ``random()`` calls), as CPython computes."""
    x = ((words[0] >> 5) * 67108864.0 + (words[1] >> 6)) * (1.0 / 9007199254740992.0)
    y = ((words[2] >> 5) * 67108864.0 + (words[3] >> 6)) * (1.0 / 9007199254740992.0)
    x2pi = x * _TWOPI
    g2rad = math.sqrt(-2.0 * math.log(1.0 - y))
    return math.cos(x2pi) * g2rad, math.sin(x2pi) * g2rad


def _words(needed: int) -> Any:
    """The first ``needed`` (or more) 32-bit outputs of ``random.Random(seed)``, seed langdetect's."""
    global _stream
    if _stream is None or len(_stream) < needed:
        import numpy as np

        size = max(needed, 2 * len(_stream) if _stream is not None else 1 << 16)
        rnd = random.Random()
        rnd.seed(langprofiles.SEED)
        # getrandbits(32 * size) fills its result from the least significant word up, one MT output each
        raw = rnd.getrandbits(32 * size).to_bytes(4 * size, "little")
        _stream = np.frombuffer(raw, dtype="<u4").astype(np.uint32)
    return _stream


def _profile_matrix() -> Any:
    """Profiles of every n-gram seen so far, one row each, in first-seen order (grown on demand)."""
    global _matrix
    import numpy as np

    if _matrix is None or len(_matrix) < len(_profile_rows):
        fresh = profiles().dense(_profile_rows[0 if _matrix is None else len(_matrix):])
        _matrix = fresh if _matrix is None else np.concatenate([_matrix, fresh])
    return _matrix


def _ngram_ids(cleaned: str, known: dict[str, int]) -> bytes:
    """Ids (rows of ``_profile_matrix``) of langdetect's n-grams of ``cleaned``, in its order (int64 bytes)."""
    pieces = cleaned.translate(_normal_table(cleaned)).split(" ")
    last = pieces.pop()
    found = list(map(_ids_spaced.get, pieces))
    for k, ids in enumerate(found):
        if ids is None:
            found[k] = _ids_spaced[pieces[k]] = _word_ids(pieces[k], True, known)
    tail = _ids_final.get(last)
    if tail is None:
        tail = _ids_final[last] = _word_ids(last, False, known)
    found.append(tail)
    return b"".join(found)


def _word_ids(word: str, space_follows: bool, known: dict[str, int]) -> bytes:
    """Profile row ids of the n-grams langdetect takes from `` word `` (int64 bytes).

    langdetect's ``NGram`` buffer restarts after every space, so a word's n-grams depend only on the
    word and on whether a space follows it: each position yields its 1-, 2- and 3-gram ending there
    when the profile knows it, except where it and the previous character are both upper case
    (langdetect's "capital word" state). Grams the profile lacks are remembered as -1; ``known`` maps
    each profile n-gram to its profile row.
    """
    if not word:  # only at either end of the text (spaces are collapsed); langdetect yields nothing
        return b""
    padded = " " + word + (" " if space_follows else "")
    ids = _gram_ids
    get = ids.get
    out = []
    previous_upper = False  # the leading space
    for j in range(1, len(padded)):
        char = padded[j]
        upper = char.isupper()
        if upper and previous_upper:
            continue
        previous_upper = upper
        grams = (padded[j - 1:j + 1], padded[j - 2:j + 1]) if j >= 2 else (padded[0:2],)
        if char != " ":
            grams = (char,) + grams
        for gram in grams:
            gid = get(gram)
            if gid is None:
                if gram in known:
                    gid = ids[gram] = len(_profile_rows)
                    _profile_rows.append(known[gram])
                else:
                    gid = ids[gram] = -1
            if gid >= 0:
                out.append(gid)
    return array.array("q", out).tobytes()


def _cleaned(text: str) -> str:
    """``Detector.append`` then ``Detector.cleaning_text``, with regexes and counts instead of loops."""
    import numpy as np
    from langdetect.detector import Detector
    from langdetect.utils.ngram import NGram
    from langdetect.utils.unicode_block import unicode_block

    if "http" in text:  # both substitutions are identities when their pattern cannot match
        text = Detector.URL_RE.sub(" ", text)
    if "@" in text:
        text = Detector.MAIL_RE.sub(" ", text)
    text = _SPACES.sub(" ", NGram.normalize_vi(text)[:_MAX_TEXT_LENGTH])
    codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    latin = int(np.count_nonzero(codes - 65 <= 57))  # "A" <= char <= "z"
    non_latin = 0
    if int(np.count_nonzero(codes >= 0x300)):  # characters >= U+0300, never in A-z
        for char, count in collections.Counter(_HIGH.findall(text)).items():
            extended = _block_is_latin_ext_additional.get(char)
            if extended is None:
                extended = _block_is_latin_ext_additional[char] = (
                    unicode_block(char) == "Latin Extended Additional")
            if not extended:
                non_latin += count
    if latin * 2 < non_latin:
        text = _LATIN.sub("", text)
    return text


def _normal_table(textual: str) -> dict[int, str]:
    """``str.translate`` table of ``NGram.normalize`` for the characters of ``textual`` (memoised)."""
    from langdetect.utils.ngram import NGram

    for char in set(textual) - _normalised.keys():
        _normalised[char] = _normal_ords[ord(char)] = NGram.normalize(char)
    return _normal_ords
