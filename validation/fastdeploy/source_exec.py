"""Run a FastDeploy checkout's own slot-mapping lines with real Paddle, one BatchState step at a time.

The functions are taken from the checkout's files by ``ast`` and compiled from their own nodes (tracebacks
name the checkout's file and line); the ``fastdeploy`` package is never imported. What they read is built
from the state:

- ``share_inputs`` / the model's buffers: allocated by evaluating the checkout's own allocation call
  (``paddle.zeros`` / ``paddle.full`` / ``paddle.empty`` and its dtype, from ``input_batch.py`` or the model's
  ``__init__``) at the state's ``max_num_batched_tokens`` entries, once per instance, kept across steps.
  ``paddle.empty`` memory is the state's ``prior_position_ids`` (zeros after), as in the models.
- ``forward_meta``: the step's ``seq_lens_*``, ``block_tables``, ``batch_id_per_token`` (the runner's buffer:
  the state's packing, -1 on padded rows; ``get_padding_offset`` itself is not run), ``ids_remove_padding``
  with the runner's row count: the launch count for the eager runner step (#7367 on), the padded capture
  size for the legacy model pre-process, which runs inside the captured graph [read: deepseek_v3.py
  ``forward`` calls ``pre_process``; inferred: the capture size is the padded count].
- ``cache_config.block_size`` and each legacy consumer's block size: the state's block size, passed through
  the consumer's own call-site expression (a literal there, such as the legacy indexer's 64, stays literal).

Under graph replay the consumers read the persistent slot buffer by address over the padded rows (FINDINGS 1,
[read for SPEC 4a]); the step returns that. ``block_tables`` is handed over guarded: an index read outside the
whole table (garbage on the GPU, garbage on CPU Paddle too) raises ``KernelFault`` as the models do; every
read inside it is real Paddle indexing.
"""

from __future__ import annotations

import ast
import builtins
import copyreg
import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

from validation.errors import InputError
from validation.fastdeploy.checkout import (
    DSA_BACKEND, INPUT_BATCH, LAYER_FUNCTION, MODEL, RUNNER, STEP_FUNCTION, Checkout, Shape, open_checkout,
)
from validation.fastdeploy.op_provider import OpProvider
from validation.impls.faults import KernelFault
from validation.impls.paddle_paths import DEFAULT_NUM_LAYERS, launch, prior_contents
from validation.impls.paddle_runtime import paddle

LEGACY_CLASS_METHOD = "pre_process"
# ``forward_meta`` / ``share_inputs`` entries that are this step's inputs (from the state), not persistent buffers.
STEP_FIELDS = ("seq_lens_encoder", "seq_lens_decoder", "seq_lens_this_time", "block_tables", "batch_id_per_token",
               "cu_seqlens_q")
LOGGER = logging.getLogger("fastdeploy.source")


class _AttentionBackend:
    """Stands for the attention backend classes the runner's ``isinstance`` test names (the DSA backend runs)."""


class _Allocator:
    """``paddle`` as the allocation expressions see it: the same module, but ``empty`` is the state's
    prior contents (real ``paddle.empty`` memory is whatever the allocator hands out)."""

    def __init__(self, prior: np.ndarray) -> None:
        self._prior = prior

    def empty(self, shape: Any, dtype: Any = None) -> Any:
        memory = np.zeros(int(np.prod(shape)), dtype=np.int64)
        flat = self._prior[: memory.shape[0]]
        memory[: flat.shape[0]] = flat
        return paddle().to_tensor(memory.reshape(shape)).astype(dtype or "float32")

    def __getattr__(self, name: str) -> Any:
        return getattr(paddle(), name)


class GuardedTable:
    """``block_tables`` with a bounds guard: a read outside the whole table is a ``KernelFault`` naming the token row;
    anything else is delegated to the real Paddle tensor (its indexing included)."""

    def __init__(self, tensor: Any, what: str) -> None:
        self._tensor = tensor
        self._what = what

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, tuple) and len(key) == 2 and all(hasattr(k, "numpy") for k in key):
            self._check(*(np.asarray(k.numpy(), dtype=np.int64).reshape(-1) for k in key))
        return self._tensor[key]

    def _check(self, rows: np.ndarray, cols: np.ndarray) -> None:
        nrows, width = (int(d) for d in self._tensor.shape)
        rows = np.where(rows < 0, rows + nrows, rows)  # Paddle normalises a negative index once per dimension
        cols = np.where(cols < 0, cols + width, cols)
        flat = rows * width + cols
        outside = np.flatnonzero((flat < 0) | (flat >= nrows * width))
        if outside.size:
            token = int(outside[0])
            raise KernelFault(f"{self._what}: reads block_tables out of bounds (token row {token}: flat index "
                              f"{int(flat[token])} of {nrows * width})")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tensor, name)


class _Instance(SimpleNamespace):
    """A stand-in ``self``: attributes the checkout's ``__init__`` assigns are evaluated on first read."""

    def __init__(self, lazy: Callable[[str], Any], **fields: Any) -> None:
        super().__init__(**fields)
        object.__setattr__(self, "_lazy", lazy)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        value = self._lazy(name)
        setattr(self, name, value)
        return value


def function_code(checkout: Checkout, relpath: str, node: ast.FunctionDef) -> Any:
    """The checkout's own ``def`` compiled from its AST node (line numbers kept): a module defining it."""
    try:
        return compile(ast.Module(body=[node], type_ignores=[]), str(checkout.root / relpath), "exec")
    except SyntaxError as exc:
        raise InputError("fastdeploy", f"{checkout.root / relpath}:{exc.lineno}: {exc.msg}") from None


def bind(code: Any, name: str, names: Mapping[str, Any]) -> Callable:
    """The function ``name`` that ``code`` defines, with ``names`` as its globals (cheap: no compiling)."""
    namespace: dict[str, Any] = {"__builtins__": builtins, "paddle": paddle(), "logger": LOGGER, **names}
    exec(code, namespace)  # noqa: S102 - the code under test
    return namespace[name]


def _self_assignments(tree: ast.Module, attr: str) -> list[ast.expr]:
    """Values of every ``self.attr = ...`` (plain or annotated) in the file."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        if any(isinstance(t, ast.Attribute) and t.attr == attr and isinstance(t.value, ast.Name) and t.value.id == "self"
               for t in targets):
            found.append(value)
    return found


def _buffer_keys(function: ast.FunctionDef) -> list[str]:
    """String keys the function reads from ``self.share_inputs[...]``."""
    keys = []
    for node in ast.walk(function):
        if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and node.value.attr == "share_inputs"
                and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str)):
            keys.append(node.slice.value)
    return list(dict.fromkeys(keys))


def _self_attributes(function: ast.FunctionDef) -> list[str]:
    """``self.X`` attributes a method reads."""
    return list(dict.fromkeys(n.attr for n in ast.walk(function) if isinstance(n, ast.Attribute)
                              and isinstance(n.value, ast.Name) and n.value.id == "self"))


def allocation_call(checkout: Checkout, relpath: str, attr: str) -> ast.Call:
    """The ``paddle.<alloc>(...)`` call that allocates ``self.attr`` in ``relpath``; exit 2 when there is none."""
    for value in _self_assignments(checkout.trees[relpath], attr):
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute) and value.args:
            return value
    raise InputError("fastdeploy", f"{checkout.root / relpath}: no allocation of self.{attr} "
                     "(looked for self.X = paddle.zeros/full/empty(...))")


@dataclass(frozen=True)
class Allocation:
    """The checkout's allocation call of one buffer, its shape replaced by ``[__size__]`` (the state's buffer size)."""

    code: Any
    where: str

    @classmethod
    def of(cls, checkout: Checkout, relpath: str, attr: str) -> Allocation:
        call = allocation_call(checkout, relpath, attr)
        shaped = ast.Call(func=call.func, args=[ast.Name("__size__", ast.Load()), *call.args[1:]], keywords=call.keywords)
        expression = ast.fix_missing_locations(ast.Expression(ast.copy_location(shaped, call)))
        return cls(compile(expression, str(checkout.root / relpath), "eval"), checkout.cite(relpath, call))

    def __call__(self, size: int, prior: np.ndarray) -> Any:
        try:
            return eval(self.code, {"__builtins__": builtins, "paddle": _Allocator(prior),  # noqa: S307 - code under test
                                    "__size__": [size]})
        except Exception as exc:  # noqa: BLE001 - what the checkout's expression raised, named
            raise InputError("fastdeploy", f"{self.where}: the allocation does not evaluate here "
                             f"({type(exc).__name__}: {exc})") from None


def _call_sites(checkout: Checkout, relpath: str, name: str) -> list[tuple[ast.Call, ast.ClassDef | None]]:
    """Every call of ``name(...)`` in the file, in file order, with the top-level class it sits in."""
    sites = []
    for top in checkout.trees[relpath].body:
        cls = top if isinstance(top, ast.ClassDef) else None
        sites.extend((node, cls) for node in ast.walk(top)
                     if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name)
    return sites


class _Consumer:
    """One legacy per-layer consumer: the checkout's ``compute_slot_mapping`` of that file, called with its own
    call-site argument expressions, ``self`` being the consumer's class with its ``__init__`` attributes."""

    def __init__(self, checkout: Checkout, relpath: str, label: str) -> None:
        sites = _call_sites(checkout, relpath, LAYER_FUNCTION)
        if not sites:
            raise InputError("fastdeploy", f"{checkout.root / relpath}: no call of {LAYER_FUNCTION}(...) "
                             "(looked for the legacy consumer's call site)")
        call, cls = sites[0]
        self.label = label
        self.where = checkout.cite(relpath, call)
        self.function = bind(function_code(checkout, relpath, checkout.function(relpath, LAYER_FUNCTION)),
                             LAYER_FUNCTION, {})
        filename = str(checkout.root / relpath)
        self._args = [_code(a, filename) for a in call.args]
        self._kwargs = {k.arg: _code(k.value, filename) for k in call.keywords}
        # ``self.X = <expr>`` of the consumer's class, compiled once: what ``self.block_size`` & co. evaluate to.
        assigned: dict[str, Any] = {}
        for node in ast.walk(cls) if cls is not None else ():
            if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
                for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                    if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "self":
                        assigned.setdefault(target.attr, _code(node.value, filename))
        self._assigned = assigned
        self._instances: dict[int, _Instance] = {}

    def _instance(self, block_size: int) -> _Instance:
        if block_size not in self._instances:
            config = _config(block_size, 0)

            def lazy(name: str) -> Any:
                if name not in self._assigned:
                    raise AttributeError(f"{self.where}: self.{name} is not assigned in the consumer's class")
                return _run(self._assigned[name], {"fd_config": config})

            self._instances[block_size] = _Instance(lazy, fd_config=config)
        return self._instances[block_size]

    def slots(self, forward_meta: Any, block_size: int) -> Any:
        me = self._instance(block_size)
        names = {"forward_meta": forward_meta, "self": me, "fd_config": me.fd_config}
        args = [_run(code, names) for code in self._args]
        kwargs = {k: _run(code, names) for k, code in self._kwargs.items()}
        return self.function(*args, **kwargs)


def _code(node: ast.expr, filename: str) -> Any:
    """An expression of the checkout compiled once, its line numbers kept."""
    return compile(ast.fix_missing_locations(ast.Expression(node)), filename, "eval")


def _run(code: Any, names: Mapping[str, Any]) -> Any:
    return eval(code, {"__builtins__": builtins, "paddle": paddle(), **names})  # noqa: S307 - the code under test


def _config(block_size: int, max_tokens: int) -> SimpleNamespace:
    """The slice of ``FDConfig`` the slot-mapping lines read."""
    return SimpleNamespace(
        cache_config=SimpleNamespace(block_size=block_size),
        scheduler_config=SimpleNamespace(max_num_batched_tokens=max_tokens),
    )


@dataclass(frozen=True)
class Program:
    """What one checkout's code needs, compiled once per process: the step function's code, the buffers'
    allocations, the legacy consumers, and the step function's extra parameters (#7960's ``total_token_num``)."""

    step_code: Any
    step_name: str
    allocations: dict[str, Allocation]
    consumers: tuple[_Consumer, ...] = ()
    extra_args: tuple[str, ...] = ()


@functools.lru_cache(maxsize=32)
def program(checkout: Checkout) -> Program:
    """The checkout's ``Program`` (exit 2, one line, when a piece it needs is missing)."""
    if checkout.shape is Shape.LEGACY:
        node = checkout.function(MODEL, LEGACY_CLASS_METHOD)
        return Program(function_code(checkout, MODEL, node), node.name,
                       {a: Allocation.of(checkout, MODEL, a) for a in _self_attributes(node) if a.endswith("_buffer")},
                       (_Consumer(checkout, MODEL, "indexer"), _Consumer(checkout, DSA_BACKEND, "attention")))
    node = checkout.function(RUNNER, STEP_FUNCTION)
    return Program(function_code(checkout, RUNNER, node), node.name,
                   {k: Allocation.of(checkout, INPUT_BATCH, k) for k in _buffer_keys(node) if k not in STEP_FIELDS},
                   extra_args=tuple(a.arg for a in node.args.args[1:]))


class CheckoutPath:
    """A step function running one checkout's code (subclassed per checkout by ``path_class``); one instance is one
    engine: its persistent buffers live as long as it does."""

    checkout: Checkout
    label: str

    def __init__(self, num_layers: int = DEFAULT_NUM_LAYERS) -> None:
        self.num_layers = num_layers
        self.ops = OpProvider(self.checkout)
        self._buffers: dict[str, Any] = {}
        self._size = -1
        self.program = program(self.checkout)
        self._step = bind(self.program.step_code, self.program.step_name, {
            **self.ops.namespace(), "MLAAttentionBackend": _AttentionBackend, "DSAAttentionBackend": _AttentionBackend})

    # ---- buffers -------------------------------------------------------------------------------

    def _ensure_buffers(self, inputs: Mapping[str, Any]) -> None:
        size = int(inputs["max_num_batched_tokens"])
        if size == self._size:
            return
        prior = prior_contents(inputs, size)
        self.ops.forget_buffers()
        self._buffers = {k: self.ops.register(allocation(size, prior)) for k, allocation in self.program.allocations.items()}
        self._size = size

    # ---- one step ------------------------------------------------------------------------------

    def __call__(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        self._ensure_buffers(inputs)
        self.ops.hazards.clear()
        if self.checkout.shape is Shape.LEGACY:
            out = self._legacy_step(inputs)
        else:
            out = self._runner_step(inputs)
        out["hazards"] = list(self.ops.hazards)
        return out

    def _forward_meta(self, inputs: Mapping[str, Any], rows: int, table: np.ndarray, what: str) -> SimpleNamespace:
        pd = paddle()
        i32 = {n: pd.to_tensor(np.ascontiguousarray(inputs[n], dtype=np.int32))
               for n in ("seq_lens_encoder", "seq_lens_decoder", "seq_lens_this_time", "cu_seqlens_q")}
        bid = np.ascontiguousarray(np.asarray(inputs["batch_id_per_token"], dtype=np.int32)[:rows])
        return SimpleNamespace(
            **i32, ids_remove_padding=pd.zeros([rows], dtype="int64"), batch_id_per_token=pd.to_tensor(bid),
            block_tables=GuardedTable(pd.to_tensor(np.ascontiguousarray(table, dtype=np.int32)), what))

    def _runner_step(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        rows = launch(inputs)
        meta = self._forward_meta(inputs, rows, np.asarray(inputs["block_tables"]), "slot mapping")
        config = _config(int(inputs["block_size"]), int(inputs["max_num_batched_tokens"]))
        step_fields = {n: getattr(meta, n) for n in STEP_FIELDS}
        runner = SimpleNamespace(
            share_inputs={**step_fields, **self._buffers}, forward_meta=meta, fd_config=config,
            cache_config=config.cache_config, scheduler_config=config.scheduler_config,
            attn_backends=[_AttentionBackend()], routing_replay_manager=None)
        self._step(runner, *[rows for _ in self.program.extra_args])  # total_token_num (#7960): the runner's launch count
        positions = self.ops.base(meta.position_ids)
        slots = self.ops.base(meta.slot_mapping)
        return {"position_ids": positions[: int(inputs["num_tokens"])].numpy(),
                "slot_mapping": slots[: int(inputs["padded_num_tokens"])].numpy()}

    def _legacy_step(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        padded = int(inputs["padded_num_tokens"])
        table = np.asarray(inputs["block_tables"], dtype=np.int32)
        past = np.asarray(inputs.get("block_tables_past_bsz", np.zeros((0, table.shape[1]))), dtype=np.int32)
        if padded > launch(inputs) and past.size:  # a replayed graph reads the captured table, rows past bsz included
            table = np.concatenate([table, past.reshape(-1, table.shape[1])])
        meta = self._forward_meta(inputs, padded, table, "legacy per-layer slot mapping")
        model = SimpleNamespace(**self._buffers)
        meta.position_ids, meta.mask_encoder_batch = self._step(model, meta)
        bs = int(inputs["block_size"])
        layers = []
        for _ in range(self.num_layers):
            layers.append({c.label: c.slots(meta, bs).numpy() for c in self.program.consumers})
        return {"position_ids": meta.position_ids[: int(inputs["num_tokens"])].numpy(), "layers": layers}


class _BoundPath(type):
    """The metaclass of per-checkout classes, so they pickle (the fuzzer hands implementations to its worker
    processes) as "the checkout at this root", rebuilt from the files on the other side."""


def path_class(checkout: Checkout) -> type[CheckoutPath]:
    """A ``CheckoutPath`` bound to ``checkout`` (what the seam instantiates once per run)."""
    return _BoundPath(f"FastDeploy_{checkout.commit}", (CheckoutPath,), {"checkout": checkout})


def _rebuild(root: str, commit: str) -> type[CheckoutPath]:
    return path_class(open_checkout(root, commit))


copyreg.pickle(_BoundPath, lambda cls: (_rebuild, (str(cls.checkout.root), cls.checkout.commit)))
