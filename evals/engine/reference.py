"""The oracle for the engine model: a plain, dense, causal full-sequence forward in NumPy.

It shares no code with the paged Paddle forward (model.py): no caches, no slots, no block tables, no indexer, a
different library. What the two share is only the architecture (llama: RMSNorm, rotate-half RoPE at positions
0..T-1, grouped-query attention, SwiGLU MLP, LM head tied to the embedding) and the weights.
"""

from __future__ import annotations

import numpy as np

from .weights import ModelWeights


def _rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    variance = np.mean(x.astype(np.float64) ** 2, axis=-1, keepdims=True)
    return (x / np.sqrt(variance + eps)).astype(np.float32) * weight


def _rotate_half(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    half = x.shape[-1] // 2
    rotated = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rotated * sin


def reference_forward(weights: ModelWeights, token_ids) -> np.ndarray:
    """Logits ``[T, vocab]`` (float32) of one sequence, every position attending to all earlier ones."""
    c = weights.config
    ids = np.asarray(token_ids, dtype=np.int64)
    t = len(ids)
    d = c.head_dim
    inv_freq = 1.0 / (c.rope_theta ** (np.arange(0, d, 2, dtype=np.float64) / d))
    angles = np.outer(np.arange(t, dtype=np.float64), inv_freq)
    cos = np.cos(np.concatenate([angles, angles], axis=-1)).astype(np.float32)[:, None, :]  # [T, 1, d]
    sin = np.sin(np.concatenate([angles, angles], axis=-1)).astype(np.float32)[:, None, :]
    causal = np.triu(np.full((t, t), -np.inf, dtype=np.float32), k=1)
    group = c.num_heads // c.num_kv_heads

    x = weights.embedding[ids]
    for layer in weights.layers:
        h = _rms_norm(x, layer.attn_norm, c.rms_norm_eps)
        qkv = h @ layer.qkv
        q = qkv[:, : c.q_size].reshape(t, c.num_heads, d)
        k = qkv[:, c.q_size : c.q_size + c.kv_size].reshape(t, c.num_kv_heads, d)
        v = qkv[:, c.q_size + c.kv_size :].reshape(t, c.num_kv_heads, d)
        q, k = _rotate_half(q, cos, sin), _rotate_half(k, cos, sin)
        heads = []
        for head in range(c.num_heads):
            kv = head // group
            scores = (q[:, head, :] @ k[:, kv, :].T) / np.float32(np.sqrt(d)) + causal
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            heads.append((scores / scores.sum(axis=-1, keepdims=True)) @ v[:, kv, :])
        x = x + np.concatenate(heads, axis=-1) @ layer.o
        h = _rms_norm(x, layer.ffn_norm, c.rms_norm_eps)
        gate, up = np.split(h @ layer.gate_up, 2, axis=-1)
        x = x + (gate / (1.0 + np.exp(-gate)) * up) @ layer.down
    return _rms_norm(x, weights.final_norm, c.rms_norm_eps) @ weights.embedding.T
