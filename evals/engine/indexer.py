"""The lightning indexer's two steps (DeepSeek-V3.2's DSA shape), as pure functions of Paddle tensors.

``index_scores``: ``score(t, s) = sum_i w_i(t) * relu(q_i(t) . k_i(s) / sqrt(d))`` over the index heads ``i``;
``select_top_k``: each token keeps its ``top_k`` best-scoring visible cached tokens, itself always included.
model.py derives the index queries, keys and head weights from the layer's own projections.
"""

from __future__ import annotations

import numpy as np

from validation.impls.paddle_runtime import paddle as _load_paddle

paddle = _load_paddle()  # through the suite's loader, which keeps SIGTERM ending the process (paddle_runtime)
F = paddle.nn.functional


def index_scores(queries, keys, head_weights, scale: float):
    """ReLU-weighted dot products ``[n, C]``: ``sum_i head_weights[:, i] * relu(scale * q_i . k)``.

    queries ``[ctx_rows, rows * H, D]``: each token's H index queries, zero outside the key columns each head reads;
    keys ``[ctx_rows, C, D]``: the context's index keys (``ctx_rows`` is 1 when all ``n = ctx_rows * rows`` tokens
    share one context, else n, one context each); head_weights ``[n, H]``.
    """
    n, heads = head_weights.shape
    dots = paddle.matmul(queries, keys, transpose_y=True).reshape([n, heads, keys.shape[1]])
    return (F.relu(dots * scale) * head_weights.unsqueeze(-1)).sum(axis=1)


def select_top_k(scores, visible, is_self, top_k: int):
    """Boolean ``[n, C]``: the ``min(top_k, visible)`` best visible tokens of each row, the token itself first."""
    n, ctx = scores.shape
    scores = paddle.where(visible, scores, paddle.full_like(scores, -np.inf))
    scores = paddle.where(is_self, paddle.full_like(scores, np.inf), scores)
    keep = paddle.topk(scores, k=min(top_k, ctx), axis=-1).indices
    chosen = paddle.put_along_axis(paddle.zeros([n, ctx], "int32"), keep, paddle.ones(keep.shape, "int32"), axis=-1)
    return paddle.logical_and(chosen > 0, visible)
