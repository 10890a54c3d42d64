"""The fast paths equal the tools they replace: langdetect, NLTK's Punkt and ``word_tokenize``.

Language detection is batched across texts (``language.Detector.detect_many``), Punkt's sentence splitting is a
transcription with memoised break decisions, and capital words skip Treebank for sentences without
upper case. Each is compared here with the library it stands for, on the real prompts (when present),
generated model-like responses and their loose variants, and hand-picked edge cases; then whole
reports are compared with reports computed through the libraries themselves.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import random

import pytest

from evals.ifeval import data, language, scoring, text
from ifeval_support import REPO, SAMPLE_RESPONSES, real_data_path

EDGE_TEXTS = [
    "", " ", "1234", "https://example.com a@b.org", "안녕하세요 세계", "Xin chào thế giới", "مرحبا بالعالم",
    "a", "A", "ab", " x ", "Hello", "HELLO WORLD", "ǅemal", "Ⅻ ⒶⒷ", "naïve café", "日本語のテキスト",
    "Der schnelle braune Fuchs springt über den faulen Hund.", "tiếng Việt có dấu", "x" * 12000,
]

PUNKT_PIECES = [
    "Dr.", "Mr. Smith", "e.g.", "U.S.A.", "(Hi.)", '"Yes."', "Wait...", "no!", "What?!", "end.'", "--",
    "3.14", "i.e.", "\n", "\n\n", "  ", "ok.)", "a.", "B.", "»", "«x.»", "“Quote.”", "etc.", "1.", "Ltd.",
    "St.", " ", ".", "?", "!", "HELLO.", "*Bold.*", "[x].", "Hi\tthere.",
]


def _bench_module():
    spec = importlib.util.spec_from_file_location("bench_ifeval", REPO / "benchmarks" / "bench_ifeval.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def _sample_variants() -> list[str]:
    texts: list[str] = []
    for line in SAMPLE_RESPONSES.read_text(encoding="utf-8").splitlines():
        texts += scoring.loose_variants(json.loads(line)["response"])
    return texts


def test_batched_detection_equals_langdetect_on_edge_cases_and_the_sample() -> None:
    texts = EDGE_TEXTS + _sample_variants()
    detector = language.detector()
    expected = [detector.reference_detect(t) for t in texts]
    assert detector.detect_many(texts) == expected
    assert detector.detect_many(texts[::-1]) == expected[::-1]  # a text's answer is independent of its batch
    assert [detector.detect_many([t])[0] for t in texts[:25]] == expected[:25]
    detector.clear_memos()
    assert [detector.language_of(t) for t in texts[:25]] == expected[:25]  # one by one, memoised
    assert detector.detect_many(texts) == expected
    assert language.Detector().detect_many(texts) == expected  # a fresh detector: same seed, same answers


def test_batched_detection_with_tiny_stream_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    # every text runs out of decoded draws again and again: the refill path must not change answers
    texts = EDGE_TEXTS[:12] + _sample_variants()[:40]
    detector = language.Detector()  # its memos start empty: every text is computed with tiny windows
    expected = [detector.reference_detect(t) for t in texts]
    monkeypatch.setattr(language, "_FIRST_SPAN", 8)
    assert detector.detect_many(texts) == expected


def test_batched_detection_equals_langdetect_on_real_and_generated_texts() -> None:
    prompts = data.load_prompts(real_data_path())
    rows = _bench_module().synthetic_responses(prompts, seed=1)
    texts = [p.prompt for p in prompts[::2]] + [p.prompt.upper() for p in prompts[1::8]]
    texts += [p.prompt.lower() for p in prompts[3::8]]
    for row in rows[::6]:
        texts += scoring.loose_variants(str(row["response"]))
    texts = list(dict.fromkeys(texts))
    detector = language.detector()
    assert detector.detect_many(texts) == [detector.reference_detect(t) for t in texts]


def test_sentences_equal_nltk_punkt() -> None:
    rnd = random.Random(7)
    texts = EDGE_TEXTS + _sample_variants()
    texts += [" ".join(rnd.choice(PUNKT_PIECES) for _ in range(rnd.randint(1, 14))) for _ in range(3000)]
    texts += ["".join(rnd.choice(PUNKT_PIECES) for _ in range(rnd.randint(1, 14))) for _ in range(1000)]
    for t in texts:
        assert list(text.sentences(t)) == text.reference_sentences(t), t
        assert text.count_sentences(t) <= text.max_sentences(t), t


def test_capital_words_equal_word_tokenize_count() -> None:
    from nltk.tokenize import word_tokenize

    rnd = random.Random(3)
    texts = EDGE_TEXTS + _sample_variants() + [t.upper() for t in _sample_variants()]
    chunks = PUNKT_PIECES + ["CANNOT", "GONNA", "'TIS", "Don't", "DON'T", "x-RAY", "CanNOT", "wAnna", "gOTTA",
                             "lemme.", '"WOW!"', "(NASA)", "<TAG>", "U.S.A.", "OK,", "OK:", "YES;", "HI...",
                             "Hi!?", "ÉCOLE", "ǅemal", "Ⅻ", "ABC123", "A_B", "{X}", "[Y].", "Z?!", "'Q'", "Mr.",
                             "WORD.)", "(WHY?)", '"END."', "I", "a", "HELLO", "World", "\n\n", "--", "A--B"]
    for n in (1000, 1000):
        texts += [" ".join(rnd.choice(chunks) for _ in range(rnd.randint(1, 14))) for _ in range(n)]
        texts += ["".join(rnd.choice(chunks) for _ in range(rnd.randint(1, 6))) for _ in range(n // 4)]
    for t in texts:
        text.ensure_punkt()
        assert text.count_capital_words(t) == sum(1 for tok in word_tokenize(t) if tok.isupper()), t
        assert list(text.word_tokens(t)) == word_tokenize(t), t


def _through_the_libraries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Route every text measurement to the library call the reference makes, memos off."""
    from nltk.tokenize import word_tokenize

    detector = language.detector()
    monkeypatch.setattr(detector, "in_background", lambda texts: contextlib.nullcontext())
    monkeypatch.setattr(detector, "language_of", detector.reference_detect)
    monkeypatch.setattr(text, "count_sentences", lambda t: len(text.reference_sentences(t)))
    monkeypatch.setattr(text, "count_capital_words",
                        lambda t: sum(1 for tok in word_tokenize(t) if tok.isupper()))


@pytest.mark.parametrize(("response_set", "fork"), [("echo", "0"), ("synthetic", "0"), ("cased", "0"),
                                                   ("synthetic", "1")])
def test_real_prompt_verdicts_equal_those_computed_through_the_libraries(
        response_set: str, fork: str, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    # fork "1": the language batch is detected in a forked child (Linux with two CPUs), else in-process
    monkeypatch.setenv("DSA_IFEVAL_FORK", fork)
    prompts = data.load_prompts(real_data_path())
    if response_set == "echo":
        rows = [{"key": p.key, "response": p.prompt} for p in prompts]
    elif response_set == "synthetic":
        rows = _bench_module().synthetic_responses(prompts)
    else:  # upper- and lower-cased prompts: the change_case and language checks' detections
        rows = [{"key": p.key, "response": p.prompt.upper() if p.key % 2 else p.prompt.lower()} for p in prompts]
    path = tmp_path / "responses.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    responses = data.load_responses(path, prompts)
    text.clear_memos()
    language.detector().clear_memos()
    forks: list[int] = []
    real_fork = os.fork

    def counting_fork() -> int:
        forks.append(1)
        return real_fork()

    monkeypatch.setattr(os, "fork", counting_fork)
    fast = scoring.to_json(scoring.score(prompts, responses))
    assert bool(forks) == (fork == "1" and language._fork_pays())
    with monkeypatch.context() as patched:
        _through_the_libraries(patched)
        slow = scoring.to_json(scoring.score(prompts, responses))
    text.clear_memos()
    language.detector().clear_memos()
    assert fast == slow
