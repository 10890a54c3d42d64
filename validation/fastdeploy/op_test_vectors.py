"""FastDeploy's own op tests (``tests/operators/test_get_position_ids*.py``) run against compiled kernels.

A GPU box for this suite has no Paddle, so ``op_test_files`` runs each file with two stand-ins:
``paddle`` is a small numpy-backed namespace (``to_tensor``,
``zeros``, ``.numpy()``, ``.cast()``, indexing and integer arithmetic with numpy's floor semantics,
which are Paddle's), and each imported op is the checkout's compiled op, writing its in-place outputs
back into the caller's tensor as Paddle's in-place ops do. The test methods run under ``unittest``,
assertions included. These are op-level inputs (some are not states a server produces): their
results are labelled op-level.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import numpy as np

from validation.fastdeploy.compiled_ops import CompiledOp
from validation.fastdeploy.op_test_files import OpTestResult, run_test_file, test_files


class PaddleTensor(np.ndarray):
    """A numpy array with the few ``paddle.Tensor`` methods the op tests call."""

    def __getitem__(self, key: Any) -> Any:
        item = super().__getitem__(key)  # an element stays a (0-d) tensor, as in Paddle
        return item if isinstance(item, np.ndarray) else np.asarray(item).view(PaddleTensor)

    def numpy(self) -> np.ndarray:
        return np.asarray(self).copy()

    def cast(self, dtype: Any) -> PaddleTensor:
        return np.asarray(self).astype(dtype).view(PaddleTensor)


def _tensor(data: Any, dtype: Any = None) -> PaddleTensor:
    return np.array(data, dtype=dtype).view(PaddleTensor)


def paddle_stand_in() -> types.SimpleNamespace:
    """The ``paddle`` names the op tests use, on numpy (host arrays; the op copies them to the GPU)."""
    return types.SimpleNamespace(
        to_tensor=lambda data, dtype=None, place=None, **_: _tensor(data, dtype),
        zeros=lambda shape, dtype="float32": _tensor(np.zeros(shape), dtype),
        full=lambda shape, value, dtype="float32": _tensor(np.full(shape, value), dtype),
        set_device=lambda *_: None, CUDAPlace=lambda *_: "gpu", CPUPlace=lambda *_: "cpu", seed=lambda *_: None,
        int32="int32", int64="int64", float32="float32")


def bound_op(op: CompiledOp) -> Any:
    """``op`` callable as FastDeploy's Python calls it: positional inputs (None for an absent optional)
    then attributes; in-place outputs written back into the given tensors; other outputs returned."""
    def call(*args: Any, **kwargs: Any) -> Any:
        named = dict(zip(op.parameters, args)) | kwargs
        out = op(**{k: (np.asarray(v) if isinstance(v, np.ndarray) else v) for k, v in named.items()})
        for inp, name in op.source.inplace.items():
            if isinstance(named.get(inp), np.ndarray):
                named[inp][...] = out[name]
        rest = [out[n].view(PaddleTensor) for n in op.source.outputs if n not in op.source.inplace.values()]
        return tuple(rest) if len(rest) > 1 else (rest[0] if rest else None)

    call.__name__ = op.name
    return call


def run_op_tests(root: Path, ops: dict[str, CompiledOp]) -> list[OpTestResult]:
    """Every test method of the checkout's position-op tests, run against ``ops``; an op a test imports but
    the checkout does not declare makes that file's tests errors naming it."""
    bound = {name: bound_op(op) for name, op in ops.items()}
    return [result for path in test_files(root)
            for result in run_test_file(root, path, paddle_stand_in(), bound, "not compiled here")]
