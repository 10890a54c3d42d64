"""SmolLM2-135M as a paged, DSA-style Paddle model: caches written at the slots under test, read via block tables.

Per layer, as in DeepSeek-V3.2's DSA path, two consumers write the caches at their own slots:

* the lightning indexer writes each launched row's index key into the layer's index-key cache at ``indexer_slots``;
* attention writes each row's K and V into the layer's paged K/V caches at ``attention_slots``.

Real tokens then read their context back through the block tables. The indexer scores every visible cached token
with ReLU-weighted dot products over its index heads and keeps ``top_k`` (the token itself always); attention
attends over the kept tokens only (softmax over the kept set, the others weigh exactly zero). With ``top_k`` at
least the context, attention is dense and equals the plain model.

The indexer's weights are derived from the layer's own projections, so that its choice keeps what attention needs:
index head ``i`` is query head ``h_i = i * num_heads // num_index_heads`` after RoPE; the index key of a token is its
K after RoPE (all KV heads, ``kv_size`` values), and head ``i`` scores against its KV group's part of it, so its
score is that query head's attention logit; head weights are the query heads' norms, normalised per token:
``score(t, s) = sum_i w_i(t) * relu(q_{h_i}(t) . k_{g_i}(s) / sqrt(d))``.

Launched rows past the real tokens (CUDA-graph padding) are computed and written like real rows, as a replayed graph
does, but do not attend (their attention output is zero). Writers skip negative slots; a slot past the cache raises
IndexError naming layer, consumer, row and slot.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from validation.impls.paddle_runtime import paddle as _load_paddle

from . import indexer
from .paged import ReadGroup, WritePlan, read_groups, write_plan
from .reference import reference_forward as _reference_forward
from .weights import ModelConfig, ModelWeights

paddle = _load_paddle()  # through the suite's loader, which keeps SIGTERM ending the process (paddle_runtime)
F = paddle.nn.functional

CONSUMERS = ("indexer", "attention")


def _use_the_cores() -> None:
    """Paddle's CPU build runs its math on one thread unless told otherwise (before its first op): use every core,
    shared among pytest-xdist workers, unless the user set OMP_NUM_THREADS."""
    if "OMP_NUM_THREADS" in os.environ or not hasattr(paddle.base.core, "set_num_threads"):
        return
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    paddle.base.core.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


_use_the_cores()


@dataclass
class PagedCaches:
    """Per layer: K and V ``[num_slots, num_kv_heads, head_dim]`` and index keys ``[num_slots, kv_size]``, float32,
    slot-indexed (``slot = block * block_size + offset``), zero-initialised."""

    key: list[paddle.Tensor]
    value: list[paddle.Tensor]
    index_key: list[paddle.Tensor]
    num_blocks: int
    block_size: int

    @property
    def num_slots(self) -> int:
        return self.num_blocks * self.block_size


@dataclass
class _Layer:
    attn_norm: paddle.Tensor
    qkv: paddle.Tensor
    o: paddle.Tensor
    ffn_norm: paddle.Tensor
    gate_up: paddle.Tensor
    down: paddle.Tensor


def _share(array: np.ndarray) -> paddle.Tensor:
    """A Paddle view of a float32 NumPy array (no copy: the weights exist once in memory)."""
    return paddle.Tensor(np.ascontiguousarray(array), place=paddle.CPUPlace(), zero_copy=True)


_PARAMS: dict[int, tuple[ModelWeights, list[_Layer], paddle.Tensor, paddle.Tensor]] = {}


def _params(weights: ModelWeights) -> tuple[list[_Layer], paddle.Tensor, paddle.Tensor]:
    """Paddle views of ``weights``, made once per weights object (several models share them)."""
    key = id(weights)
    if key not in _PARAMS:
        layers = [
            _Layer(*(_share(getattr(lw, f)) for f in ("attn_norm", "qkv", "o", "ffn_norm", "gate_up", "down")))
            for lw in weights.layers
        ]
        _PARAMS[key] = (weights, layers, _share(weights.embedding), _share(weights.final_norm))
    _, layers, embedding, final_norm = _PARAMS[key]
    return layers, embedding, final_norm


class DSAModel:
    """The paged forward (``forward``) and its oracle (``reference_forward``) over one set of weights."""

    def __init__(self, weights: ModelWeights, top_k: int = 2048, num_index_heads: int = 3) -> None:
        c: ModelConfig = weights.config
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        if not 1 <= num_index_heads <= c.num_heads:
            raise ValueError(f"num_index_heads must be in 1..{c.num_heads}, got {num_index_heads}")
        self.weights = weights
        self.config = c
        self.top_k = top_k
        self.num_index_heads = num_index_heads
        self.index_query_heads = [i * c.num_heads // num_index_heads for i in range(num_index_heads)]
        group = c.num_heads // c.num_kv_heads
        self._block_diag_cols = paddle.to_tensor(_block_diagonal_columns(c, range(c.num_heads)))
        self._index_query_cols = paddle.to_tensor(_block_diagonal_columns(c, self.index_query_heads))
        self._diag_cols = paddle.to_tensor(
            [h * c.kv_size + (h // group) * c.head_dim + d for h in range(c.num_heads) for d in range(c.head_dim)]
        )
        self._layers, self._embedding, self._final_norm = _params(weights)
        self._rotate_half = paddle.to_tensor(_rotate_half_matrix(c.head_dim))
        self._inv_freq = 1.0 / (c.rope_theta ** (np.arange(0, c.head_dim, 2, dtype=np.float64) / c.head_dim))

    # ---- caches ----------------------------------------------------------------------------------------------

    def new_caches(self, num_blocks: int, block_size: int) -> PagedCaches:
        c = self.config
        slots = num_blocks * block_size
        return PagedCaches(
            key=[paddle.zeros([slots, c.num_kv_heads, c.head_dim], "float32") for _ in range(c.num_layers)],
            value=[paddle.zeros([slots, c.num_kv_heads, c.head_dim], "float32") for _ in range(c.num_layers)],
            index_key=[paddle.zeros([slots, c.kv_size], "float32") for _ in range(c.num_layers)],
            num_blocks=num_blocks,
            block_size=block_size,
        )

    # ---- the oracle ------------------------------------------------------------------------------------------

    def reference_forward(self, token_ids) -> np.ndarray:
        """Dense causal logits ``[T, vocab]`` of one sequence, no paging (NumPy; see reference.py)."""
        return _reference_forward(self.weights, token_ids)

    # ---- the paged forward -----------------------------------------------------------------------------------

    @paddle.no_grad()
    def forward(
        self,
        caches: PagedCaches,
        token_ids: np.ndarray,
        positions: np.ndarray,
        layer_slots: list[tuple[np.ndarray, np.ndarray]],
        token_request: np.ndarray,
        token_context: np.ndarray,
        block_tables: np.ndarray,
        block_size: int,
        logits_rows: np.ndarray,
    ) -> np.ndarray:
        """Logits ``[len(logits_rows), vocab]`` float32 of one step (see the engine contract for the arguments)."""
        c = self.config
        ids = np.asarray(token_ids, dtype=np.int64)
        launch = ids.shape[0]
        pos = np.asarray(positions, dtype=np.int64)
        if pos.shape != (launch,):
            raise ValueError(f"positions has shape {pos.shape}, expected ({launch},)")
        if launch and (ids.min() < 0 or ids.max() >= c.vocab_size):
            raise ValueError(f"token_ids must lie in [0, {c.vocab_size})")
        if len(layer_slots) != c.num_layers:
            raise ValueError(f"layer_slots has {len(layer_slots)} layers, expected {c.num_layers}")
        if block_size != caches.block_size:
            raise ValueError(f"block_size {block_size} differs from the caches' {caches.block_size}")
        num_real = len(token_request)
        if num_real > launch:
            raise ValueError(f"{num_real} real tokens in a launch of {launch} rows")
        rows_out = np.asarray(logits_rows, dtype=np.int64)
        if rows_out.size and (rows_out.min() < 0 or rows_out.max() >= num_real):
            raise IndexError(f"logits_rows must name real rows (< {num_real})")

        groups = read_groups(token_request, token_context, block_tables, block_size, caches.num_slots)
        plans = self._write_plans(layer_slots, launch, caches.num_slots)
        reads = [self._read_tensors(g) for g in groups]
        cos, sin = self._rope(pos)

        x = F.embedding(paddle.to_tensor(ids), self._embedding)
        for layer_index, layer in enumerate(self._layers):
            x = self._layer(layer_index, layer, x, cos, sin, caches, plans[layer_index], groups, reads)
        h = _rms_norm(paddle.gather(x, paddle.to_tensor(rows_out)), self._final_norm, c.rms_norm_eps)
        return paddle.matmul(h, self._embedding, transpose_y=True).numpy()

    def _write_plans(self, layer_slots, launch: int, num_slots: int) -> list[tuple["_Write", "_Write"]]:
        """Validated writes per layer and consumer; an array passed for several layers is planned once."""
        memo: dict[tuple[int, str], _Write] = {}
        plans = []
        for layer, pair in enumerate(layer_slots):
            if len(pair) != 2:
                raise ValueError(f"layer_slots[{layer}] must be (indexer_slots, attention_slots)")
            per_consumer = []
            for consumer, slots in zip(CONSUMERS, pair):
                key = (id(slots), consumer)
                if key not in memo:
                    memo[key] = _Write(write_plan(slots, launch, num_slots, layer, consumer), launch)
                per_consumer.append(memo[key])
            plans.append(tuple(per_consumer))
        return plans

    def _read_tensors(self, g: ReadGroup) -> dict:
        """The group's index tensors and masks, made once per step and reused by every layer."""
        contiguous = bool(np.all(np.diff(g.rows) == 1))
        return {
            "span": (int(g.rows[0]), int(g.rows[-1]) + 1) if contiguous else None,
            "rows": paddle.to_tensor(g.rows),
            "slots": paddle.to_tensor(g.slots.reshape(-1)),
            "visible": paddle.to_tensor(g.visible),
            "is_self": paddle.to_tensor(g.is_self),
            "dense_mask": paddle.to_tensor(np.where(g.visible, 0.0, -np.inf).astype(np.float32)),
        }

    def _rope(self, pos: np.ndarray) -> tuple[paddle.Tensor, paddle.Tensor]:
        angles = np.outer(pos.astype(np.float64), self._inv_freq)
        angles = np.concatenate([angles, angles], axis=-1)[:, None, :]  # [T, 1, d]
        return (paddle.to_tensor(np.cos(angles).astype(np.float32)),
                paddle.to_tensor(np.sin(angles).astype(np.float32)))

    def _layer(self, li, layer: _Layer, x, cos, sin, caches, plans, groups, reads):
        c = self.config
        launch = x.shape[0]
        h = _rms_norm(x, layer.attn_norm, c.rms_norm_eps)
        qkv = paddle.matmul(h, layer.qkv)
        qk, v = paddle.split(qkv, [c.q_size + c.kv_size, c.kv_size], axis=-1)
        qk = qk.reshape([launch, c.num_heads + c.num_kv_heads, c.head_dim])
        qk = qk * cos + paddle.matmul(qk, self._rotate_half) * sin  # RoPE on Q and K heads at once
        q, k = paddle.split(qk, [c.num_heads, c.num_kv_heads], axis=1)
        v = v.reshape([launch, c.num_kv_heads, c.head_dim])

        index_plan, attention_plan = plans
        index_plan.apply(caches.index_key[li], k.reshape([launch, c.kv_size]))
        attention_plan.apply(caches.key[li], k)
        attention_plan.apply(caches.value[li], v)

        q_flat = q.reshape([launch, c.q_size])
        outs = []
        for g, t in zip(groups, reads):
            q_rows = q_flat[t["span"][0] : t["span"][1]] if t["span"] else paddle.gather(q_flat, t["rows"])
            outs.append(self._attend(li, caches, q_rows, g, t))
        attn = _assemble(outs, reads, launch, c.q_size)  # padding rows do not attend: zeros
        x = x + paddle.matmul(attn, layer.o)

        h = _rms_norm(x, layer.ffn_norm, c.rms_norm_eps)
        gate, up = paddle.split(paddle.matmul(h, layer.gate_up), 2, axis=-1)
        return x + paddle.matmul(F.silu(gate) * up, layer.down)

    def _attend(self, li: int, caches: PagedCaches, q_flat, g: ReadGroup, t: dict):
        """Attention of the group's tokens over their selected context, read through the block tables.

        Heads meet their KV group through block-diagonal queries: ``[n, heads, kv_size]`` with each head's query
        in its group's 64 columns and zeros elsewhere, so the gathered context ``[ctx_rows, C, kv_size]`` enters
        the matmuls as it lies (no transposed copies), and the output's diagonal blocks are the heads' outputs.
        """
        c = self.config
        n, ctx = len(g.rows), g.context
        ctx_rows = 1 if g.shared else n
        keys = paddle.gather(caches.key[li], t["slots"]).reshape([ctx_rows, ctx, c.kv_size])
        values = paddle.gather(caches.value[li], t["slots"]).reshape([ctx_rows, ctx, c.kv_size])
        mask = t["dense_mask"] if self.top_k >= ctx else self._select(li, caches, q_flat, g, t)  # [n, C]

        padded = paddle.concat([q_flat, paddle.zeros([n, 1], "float32")], axis=1)
        queries = paddle.index_select(padded, self._block_diag_cols, axis=1)  # [n, heads * kv_size]
        queries = queries.reshape([ctx_rows, -1, c.kv_size])
        scores = paddle.matmul(queries, keys, transpose_y=True).reshape([n, c.num_heads, ctx])
        probs = F.softmax(scores * (1.0 / math.sqrt(c.head_dim)) + mask.unsqueeze(1), axis=-1)
        out = paddle.matmul(probs.reshape([ctx_rows, -1, ctx]), values)  # [ctx_rows, rows * heads, kv_size]
        return paddle.index_select(out.reshape([n, -1]), self._diag_cols, axis=1)  # [n, q_size]

    def _select(self, li: int, caches: PagedCaches, q_flat, g: ReadGroup, t: dict):
        """The lightning indexer: additive mask ``[n, C]`` keeping each token's top_k visible cached tokens."""
        c = self.config
        n, ctx = len(g.rows), g.context
        ctx_rows = 1 if g.shared else n
        index_keys = paddle.gather(caches.index_key[li], t["slots"]).reshape([ctx_rows, ctx, c.kv_size])
        padded = paddle.concat([q_flat, paddle.zeros([n, 1], "float32")], axis=1)
        queries = paddle.index_select(padded, self._index_query_cols, axis=1)  # [n, H * kv_size], block-diagonal
        queries = queries.reshape([n, self.num_index_heads, c.kv_size])
        norms = paddle.linalg.norm(queries, axis=-1)  # the query heads' norms (the zeros add nothing)
        head_weights = norms / norms.sum(axis=-1, keepdim=True)
        scores = indexer.index_scores(
            queries.reshape([ctx_rows, -1, c.kv_size]), index_keys, head_weights, 1.0 / math.sqrt(c.head_dim)
        )
        selected = indexer.select_top_k(scores, t["visible"], t["is_self"], self.top_k)
        return paddle.where(selected, paddle.zeros_like(scores), paddle.full_like(scores, -np.inf))


def _block_diagonal_columns(c: ModelConfig, heads) -> np.ndarray:
    """Source columns that lay query heads ``heads`` out block-diagonally, ``[len(heads) * kv_size]``: head h's
    ``head_dim`` values in its KV group's columns, column ``q_size`` (a zero pad) elsewhere."""
    group = c.num_heads // c.num_kv_heads
    cols = np.full((len(heads), c.num_kv_heads, c.head_dim), c.q_size, dtype=np.int64)
    for i, h in enumerate(heads):
        cols[i, h // group] = h * c.head_dim + np.arange(c.head_dim)
    return cols.reshape(-1)


def _assemble(outs: list, reads: list[dict], launch: int, width: int):
    """The groups' outputs at their launch rows, zeros elsewhere: a concat when the groups tile the first rows in
    order (the usual packing), else a scatter."""
    spans = [t["span"] for t in reads]
    if all(spans) and [a for a, _ in spans] == [0] + [b for _, b in spans[:-1]]:
        end = spans[-1][1] if spans else 0
        parts = outs + ([paddle.zeros([launch - end, width], "float32")] if launch > end else [])
        return parts[0] if len(parts) == 1 else paddle.concat(parts, axis=0)
    attn = paddle.zeros([launch, width], "float32")
    for out, t in zip(outs, reads):
        attn = paddle.scatter(attn, t["rows"], out, overwrite=True)
    return attn


def _rms_norm(x, weight, eps: float):
    return x * paddle.rsqrt((x * x).mean(axis=-1, keepdim=True) + eps) * weight


def _rotate_half_matrix(d: int) -> np.ndarray:
    """``R`` with ``x @ R = concat(-x[d/2:], x[:d/2])``: rotate-half as one small matmul (slices and a concat
    of strided halves cost more on Paddle's CPU kernels)."""
    half = d // 2
    r = np.zeros((d, d), dtype=np.float32)
    r[np.arange(half, d), np.arange(half)] = -1.0
    r[np.arange(half), np.arange(half, d)] = 1.0
    return r


class _Write:
    """A write plan as Paddle index tensors (made once per step)."""

    def __init__(self, plan: WritePlan, launch: int) -> None:
        self.empty = plan.rows.size == 0
        every_row = plan.rows.size == launch  # rows are sorted and distinct: all rows, in order
        self.rows = None if every_row or self.empty else paddle.to_tensor(plan.rows)
        self.slots = None if self.empty else paddle.to_tensor(plan.slots)

    def apply(self, cache, rows_values) -> None:
        if self.empty:
            return
        values = rows_values if self.rows is None else paddle.gather(rows_values, self.rows)
        paddle.scatter_(cache, self.slots, values, overwrite=True)
