"""The language of a response, as langdetect's ``detect`` (seed 0) gives it, for many texts at once.

Why this exists: the IFEval checkers ask langdetect, seeded with 0, for the language of every response
and of each of its loose variants. langdetect itself spends most of its time in a pure-Python
probability loop, one text at a time, after parsing 55 JSON profiles on every start (0.3-0.7 s and
60 MB, more than scoring 541 responses costs). This module gives the same answers, bit for bit, for
much less (BENCHMARKS.md):

* the profiles: the first process loads langdetect's factory as langdetect does and stores what it
  loaded, sparsely (184,129 non-zero probabilities: the floats themselves, never recomputed), under the
  user cache root (``user_cache.py``); later processes read that in a few milliseconds. The file's
  name carries langdetect's version and a digest of its profile files, so another langdetect gets its
  own. The language order is langdetect's (it is part of the maths);
* the random numbers: langdetect re-seeds a ``random.Random`` with ``DetectorFactory.seed = 0`` for
  every text, so all texts read one Mersenne-Twister word stream, generated once; ``choice`` and
  ``gauss`` are decoded from the words exactly as CPython does (``getrandbits`` rejection sampling,
  53-bit ``random()``, the cached second gauss value);
* the arithmetic: numpy performs the same IEEE operations element by element in the same order
  (products as a left fold, the normalising sum left to right as Python's ``sum``), for every text
  still running at once, so every probability is bit-identical;
* the work: a text stops once its answer can no longer change (after four or more trials, its leading
  language is ahead by more than the trials left can add), which cannot alter the answer; a scoring
  pass asks all its questions in one batch, in a forked child when a second core is idle;
* text cleaning and n-gram extraction are langdetect's rules, re-expressed with regexes, counts and a
  per-word memo.

Shape: all state (langdetect's seeded factory, the profiles, the random stream, the per-word and
per-text memos, the lock that guards them) lives in one ``Detector``; ``detector()`` builds the
process's one instance on first use, and the instance loads what it needs on first use too. The lock is
held across ``os.fork`` (``os.register_at_fork``), so a child never inherits it taken or the memos
half-updated. ``tests/test_ifeval_fast_paths.py`` compares the answers with langdetect's on thousands
of texts; ``tests/test_ifeval_language.py`` compares the cached profiles with langdetect's own.
"""

from __future__ import annotations

import array
import collections
import contextlib
import functools
import hashlib
import math
import os
import pickle
import random
import re
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evals.ifeval.user_cache import cache_root
from validation.errors import MissingDependency

SEED = 0  # langdetect's DetectorFactory.seed as the scorer fixes it
_LATIN = re.compile("[A-z]")
_SPACES = re.compile(" {2,}")
_HIGH = re.compile("[^\x00-\u02ff]")
_MAX_TEXT_LENGTH = 10000  # langdetect's Detector.max_text_length default
_N_TRIAL = 7  # langdetect's Detector.n_trial default
_DECIDABLE_AFTER = 4  # k trials can outweigh the 7 - k left only when k > 7 - k
_MARGIN = 1e-9  # far above the rounding of a few additions of numbers <= 1
_FIRST_SPAN = 512  # stream words decoded for every text up front; later windows as each text needs
_FAR = 1 << 62  # a stream position past any decoded one (table padding)
_TWOPI = 2.0 * math.pi  # random.TWOPI
_ANSWER_MEMO_LIMIT = 1 << 16  # per-text answers kept before the memo starts over
_FORK_MIN = 16  # below this many texts a fork (about 10 ms) costs more than it saves


@functools.cache
def detector() -> Detector:
    """The process's one detector, built on first use (cheap: it loads nothing until asked)."""
    return Detector()


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


class Detector:
    """langdetect (seed 0) for many texts at once, with everything it loads and memoises.

    Loading (the factory, the profiles) and every memo update happen under one re-entrant lock, so
    threads may share the detector; ``os.register_at_fork`` takes the lock around ``os.fork`` and
    releases it on both sides, so a forked child starts with a free lock and consistent memos.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()  # re-entrant: profiles() loads the factory while holding it
        self._factory: Any = None
        self._profiles: Profiles | None = None
        self._stream: Any = None  # the seeded Mersenne-Twister words, numpy uint32
        self._latin_ext_additional: dict[str, bool] = {}  # per character; kept by clear_memos
        self._forget()
        os.register_at_fork(before=self._lock.acquire, after_in_parent=self._lock.release,
                            after_in_child=self._lock.release)

    def _forget(self) -> None:
        """Start every per-text, per-word and per-n-gram memo empty."""
        self._answers: dict[str, str | None] = {}
        self._normalised: dict[str, str] = {}
        self._normal_ords: dict[int, str] = {}
        self._gram_ids: dict[str, int] = {}
        self._ids_spaced: dict[str, bytes] = {}
        self._ids_final: dict[str, bytes] = {}
        self._profile_rows: list[int] = []
        self._matrix: Any = None

    def factory(self) -> Any:
        """langdetect's module-level factory, seeded with ``SEED`` and loaded exactly once."""
        with self._lock:
            if self._factory is None:
                try:
                    from langdetect import DetectorFactory, detector_factory
                except ImportError as exc:
                    raise MissingDependency("langdetect", "ifeval", "IFEval language checks") from exc
                DetectorFactory.seed = SEED
                detector_factory.init_factory()
                self._factory = detector_factory._factory
            return self._factory

    def profiles(self) -> Profiles:
        """langdetect's profiles (``load_profiles``), loaded once per detector."""
        with self._lock:
            if self._profiles is None:
                self._profiles = load_profiles(self.factory)
            return self._profiles

    def prepare(self) -> None:
        """Load the profiles and generate the random stream now (before a fork, so a child starts warm)."""
        with self._lock:
            self.profiles()
            self._words(1 << 16)

    def clear_memos(self) -> None:
        """Forget every per-text, per-word and per-n-gram memo (cold-cache benchmarks); loads stay."""
        with self._lock:
            self._forget()

    def reference_detect(self, text: str) -> str | None:
        """langdetect's own ``detect`` (seed 0), kept to prove ``detect_many`` equal to it in tests."""
        from langdetect.lang_detect_exception import LangDetectException

        one = self.factory().create()
        one.append(text)
        try:
            return str(one.detect())
        except LangDetectException:
            return None

    def language_of(self, text: str) -> str | None:
        """langdetect's verdict for ``text`` with seed 0, or None where langdetect cannot decide.

        None stands for langdetect's ``LangDetectException`` (no usable features), which the reference
        counts as the instruction followed. Memoised; ``prefetch`` and ``in_background`` fill the memo
        in bulk.
        """
        try:
            return self._answers[text]
        except KeyError:
            with self._lock:
                self.prefetch((text,))
                return self._answers[text]

    def prefetch(self, texts: Iterable[str]) -> None:
        """Detect the languages of ``texts`` not yet memoised, all in one batch (much cheaper than one by one)."""
        with self._lock:
            todo = self._unanswered(texts)
            if todo:
                self._remember(todo, self.detect_many(todo))

    @contextlib.contextmanager
    def in_background(self, texts: Iterable[str]) -> Iterator[None]:
        """Detect the languages of ``texts`` while the ``with`` body runs; memoised on leaving it.

        On Linux with a second CPU that is idle (by the one-minute load average), a large enough batch is
        detected in a forked child (after the profiles and the random stream are loaded, so the child
        starts warm) and handed back through a pipe; otherwise, or if the child fails, it is detected
        here on leaving. ``DSA_IFEVAL_FORK=0`` turns the fork off, ``=1`` forces it where possible. The
        answers are the same either way; on a loaded machine the child would only compete for the same
        core.
        """
        todo = self._unanswered(texts)
        if len(todo) < _FORK_MIN or not _fork_pays():
            yield
            self.prefetch(todo)
            return
        self.prepare()
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: detect, send, leave without running the parent's exit handlers
            code = 1
            try:
                os.close(read_end)
                payload = pickle.dumps(self.detect_many(todo))
                with os.fdopen(write_end, "wb") as sink:
                    sink.write(payload)
                code = 0
            finally:
                os._exit(code)
        os.close(write_end)
        try:
            yield
        finally:
            with os.fdopen(read_end, "rb") as source:
                payload = source.read()
            _, status = os.waitpid(pid, 0)
        found = pickle.loads(payload) if status == 0 and payload else None
        if not isinstance(found, list) or len(found) != len(todo):
            self.prefetch(todo)
            return
        with self._lock:
            self._remember(todo, found)

    def _unanswered(self, texts: Iterable[str]) -> list[str]:
        """``texts`` without repeats and without those already answered, in first-seen order."""
        return [t for t in dict.fromkeys(texts) if t not in self._answers]

    def _remember(self, texts: list[str], answers: list[str | None]) -> None:
        """Memoise answers (caller holds the lock); the memo starts over rather than grow without bound."""
        if len(self._answers) + len(texts) > _ANSWER_MEMO_LIMIT:
            self._answers.clear()
        self._answers.update(zip(texts, answers))

    def detect_many(self, texts: Sequence[str]) -> list[str | None]:
        """langdetect's ``detect`` of every text (None where it raises), computed together.

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
        from langdetect.detector import Detector as LangdetectDetector

        with self._lock:
            loaded = self.profiles()
            results: list[str | None] = [None] * len(texts)
            # langdetect's answer depends on the text only through its n-gram sequence: texts with the
            # same sequence (loose variants often differ only in characters that yield no n-gram) are
            # detected once
            row_of: dict[bytes, int] = {}
            members: list[list[int]] = []
            lengths: list[int] = []
            chunks: list[bytes] = []
            for index, one in enumerate(texts):
                ids = self._ngram_ids(self._cleaned(one), loaded.rows)
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
            profile = self._profile_matrix()
            n_rows = len(chunks)
            counts = np.array(lengths, dtype=np.int64)
            offsets = np.zeros(n_rows, dtype=np.int64)
            np.cumsum(counts[:-1], out=offsets[1:])
            flat_ids = np.frombuffer(b"".join(chunks), dtype=np.int64)
            shifts = np.array([32 - int(c).bit_length() for c in counts], dtype=np.uint32)
            total = self._run_trials(counts, shifts, offsets, flat_ids, profile)
        best = total.argmax(axis=1)  # langdetect's stable descending sort keeps the first of equal ones
        top = total[np.arange(n_rows), best]
        langs = loaded.langlist
        for r, indices in enumerate(members):
            if top[r] > LangdetectDetector.PROB_THRESHOLD:
                answer = str(langs[int(best[r])])
            else:
                answer = str(LangdetectDetector.UNKNOWN_LANG)
            for index in indices:
                results[index] = answer
        return results

    def _run_trials(self, counts: Any, shifts: Any, offsets: Any, flat_ids: Any, profile: Any) -> Any:
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
        from langdetect.detector import Detector as LangdetectDetector

        n_rows, n_langs = len(counts), profile.shape[1]
        total = np.zeros((n_rows, n_langs))
        trial = np.zeros(n_rows, dtype=np.int64)
        gauss_next = [0.0] * n_rows
        uniform = 1.0 / n_langs
        reference = LangdetectDetector
        alpha, width, base = reference.ALPHA_DEFAULT, reference.ALPHA_WIDTH, reference.BASE_FREQ
        threshold = reference.CONV_THRESHOLD
        limit_steps = reference.ITERATION_LIMIT // 5  # blocks of five after the first draw
        # each text's next draws: stream positions, profile ids, how many, the window's first position
        table = list(self._accepted(np.zeros(n_rows, dtype=np.int64), counts, shifts, offsets, flat_ids,
                                    _FIRST_SPAN))
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
                positions, gids, how_many = self._accepted(begin, counts[r], shifts[r], offsets[r], flat_ids,
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
                    words = self._words(int(at.max()) + 4)
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

    def _accepted(self, begin: Any, counts: Any, shifts: Any, offsets: Any, flat_ids: Any,
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
        words = self._words(last + span)
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

    def _words(self, needed: int) -> Any:
        """The first ``needed`` (or more) 32-bit outputs of ``random.Random(SEED)``, langdetect's stream."""
        if self._stream is None or len(self._stream) < needed:
            import numpy as np

            size = max(needed, 2 * len(self._stream) if self._stream is not None else 1 << 16)
            rnd = random.Random()
            rnd.seed(SEED)
            # getrandbits(32 * size) fills its result from the least significant word up, one MT output each
            raw = rnd.getrandbits(32 * size).to_bytes(4 * size, "little")
            self._stream = np.frombuffer(raw, dtype="<u4").astype(np.uint32)
        return self._stream

    def _profile_matrix(self) -> Any:
        """Profiles of every n-gram seen so far, one row each, in first-seen order (grown on demand)."""
        import numpy as np

        rows, matrix = self._profile_rows, self._matrix
        if matrix is None or len(matrix) < len(rows):
            fresh = self.profiles().dense(rows[0 if matrix is None else len(matrix):])
            self._matrix = fresh if matrix is None else np.concatenate([matrix, fresh])
        return self._matrix

    def _ngram_ids(self, cleaned: str, known: dict[str, int]) -> bytes:
        """Ids (rows of ``_profile_matrix``) of langdetect's n-grams of ``cleaned``, in its order (int64 bytes)."""
        pieces = cleaned.translate(self._normal_table(cleaned)).split(" ")
        last = pieces.pop()
        found = list(map(self._ids_spaced.get, pieces))
        for k, ids in enumerate(found):
            if ids is None:
                found[k] = self._ids_spaced[pieces[k]] = self._word_ids(pieces[k], True, known)
        tail = self._ids_final.get(last)
        if tail is None:
            tail = self._ids_final[last] = self._word_ids(last, False, known)
        found.append(tail)
        return b"".join(found)

    def _word_ids(self, word: str, space_follows: bool, known: dict[str, int]) -> bytes:
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
        ids = self._gram_ids
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
                        gid = ids[gram] = len(self._profile_rows)
                        self._profile_rows.append(known[gram])
                    else:
                        gid = ids[gram] = -1
                if gid >= 0:
                    out.append(gid)
        return array.array("q", out).tobytes()

    def _cleaned(self, text: str) -> str:
        """langdetect's ``Detector.append`` then ``cleaning_text``, with regexes and counts instead of loops."""
        import numpy as np
        from langdetect.detector import Detector as LangdetectDetector
        from langdetect.utils.ngram import NGram
        from langdetect.utils.unicode_block import unicode_block

        if "http" in text:  # both substitutions are identities when their pattern cannot match
            text = LangdetectDetector.URL_RE.sub(" ", text)
        if "@" in text:
            text = LangdetectDetector.MAIL_RE.sub(" ", text)
        text = _SPACES.sub(" ", NGram.normalize_vi(text)[:_MAX_TEXT_LENGTH])
        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        latin = int(np.count_nonzero(codes - 65 <= 57))  # "A" <= char <= "z"
        non_latin = 0
        if int(np.count_nonzero(codes >= 0x300)):  # characters >= U+0300, never in A-z
            for char, count in collections.Counter(_HIGH.findall(text)).items():
                extended = self._latin_ext_additional.get(char)
                if extended is None:
                    extended = self._latin_ext_additional[char] = (
                        unicode_block(char) == "Latin Extended Additional")
                if not extended:
                    non_latin += count
        if latin * 2 < non_latin:
            text = _LATIN.sub("", text)
        return text

    def _normal_table(self, textual: str) -> dict[int, str]:
        """``str.translate`` table of ``NGram.normalize`` for the characters of ``textual`` (memoised)."""
        from langdetect.utils.ngram import NGram

        for char in set(textual) - self._normalised.keys():
            self._normalised[char] = self._normal_ords[ord(char)] = NGram.normalize(char)
        return self._normal_ords


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


def load_profiles(factory: Callable[[], Any]) -> Profiles:
    """The profiles, from the user cache when it is there, else from langdetect's ``factory()`` (then cached).

    Not memoised here: ``Detector.profiles`` keeps the one a process uses; tests call this directly to
    compare a freshly built set with the one read back.
    """
    import numpy as np

    path = _cache_path()
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as stored:
                return _profiles(stored["grams"].tolist(), stored["langlist"].tolist(), stored["indptr"],
                                 stored["langs"], stored["probs"])
        except (OSError, ValueError, KeyError):
            pass  # unreadable (a partial copy, another numpy): rebuilt below
    grams, langlist, indptr, langs, probs = _from_langdetect(factory())
    _store(path, grams, langlist, indptr, langs, probs)
    return _profiles(grams, langlist, indptr, langs, probs)


def _profiles(grams: list[str], langlist: list[str], indptr: Any, langs: Any, probs: Any) -> Profiles:
    return Profiles(dict(zip(grams, range(len(grams)))), tuple(langlist), indptr, langs, probs)


def _from_langdetect(fac: Any) -> tuple[list[str], list[str], Any, Any, Any]:
    """langdetect's loaded ``word_lang_prob_map`` in CSR form: its non-zero floats, bit for bit."""
    import numpy as np

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
    """The cache file for the installed langdetect: its version and a digest of its profile files."""
    from importlib import metadata

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


def _fork_pays() -> bool:
    """Whether detecting in a forked child saves time: ``DSA_IFEVAL_FORK``, else Linux with an idle CPU."""
    setting = os.environ.get("DSA_IFEVAL_FORK", "auto")
    if setting == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        cpus = len(os.sched_getaffinity(0))
        return cpus >= 2 and (setting == "1" or os.getloadavg()[0] <= cpus - 1)
    except (AttributeError, OSError):
        return False
