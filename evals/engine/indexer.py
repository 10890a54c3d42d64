"""The lightning indexer's two steps (DeepSeek-V3.2's DSA shape), as pure functions of Paddle tensors.

``index_scores``: ``score(t, s) = sum_i w_i(t) * relu(q_i(t) . k_i(s) / sqrt(d))`` over the index heads ``i``;
``select_top_k``: each token keeps its ``top_k`` best-scoring visible cached tokens, itself always included.
model.py derives the index queries, keys and head weights from the layer's own projections.
"""

from __future__ import annotations

import math

import numpy as np
import paddle
import paddle.nn.functional as F


def index_scores(queries, keys, head_weights, shared: bool):
    """ReLU-weighted dot products ``[n, C]``.

    queries ``[n, H, d]``; keys ``[ctx_rows, C, H, d]`` (each index head's part of every context token's index key;
    ``ctx_rows`` is 1 when all n tokens share one context, else n); head_weights ``[n, H]``.
    """
    d = queries.shape[-1]
    keys_t = keys.transpose([0, 2, 1, 3])  # [ctx_rows, H, C, d]
    if shared:
        dots = paddle.matmul(queries.transpose([1, 0, 2]), keys_t[0], transpose_y=True).transpose([1, 0, 2])
    else:
        dots = paddle.matmul(queries.unsqueeze(2), keys_t, transpose_y=True).squeeze(2)
    return (F.relu(dots / math.sqrt(d)) * head_weights.unsqueeze(-1)).sum(axis=1)


def select_top_k(scores, visible, is_self, top_k: int):
    """Boolean ``[n, C]``: the ``min(top_k, visible)`` best visible tokens of each row, the token itself first."""
    n, ctx = scores.shape
    scores = paddle.where(visible, scores, paddle.full_like(scores, -np.inf))
    scores = paddle.where(is_self, paddle.full_like(scores, np.inf), scores)
    keep = paddle.topk(scores, k=min(top_k, ctx), axis=-1).indices
    chosen = paddle.put_along_axis(paddle.zeros([n, ctx], "int32"), keep, paddle.ones(keep.shape, "int32"), axis=-1)
    return paddle.logical_and(chosen > 0, visible)
