"""FastDeploy's own op tests (``tests/operators/test_get_position_ids*.py``) run against compiled kernels.

The tests are FastDeploy's peer vectors: inputs and the outputs FastDeploy's authors expect. They
import Paddle and the built ``fastdeploy`` package, neither of which a GPU box for this suite has.
So each file is parsed (``ast``), its imports of ``paddle`` and ``fastdeploy`` dropped, and its own
code executed with two stand-ins: ``paddle`` is a small numpy-backed namespace (``to_tensor``,
``zeros``, ``.numpy()``, ``.cast()``, indexing and integer arithmetic with numpy's floor semantics,
which are Paddle's), and each imported op is the checkout's compiled op, writing its in-place outputs
back into the caller's tensor as Paddle's in-place ops do. The test methods run under ``unittest``,
assertions included. These are op-level inputs (some are not states a server produces): their
results are labelled op-level.
"""

from __future__ import annotations

import ast
import types
import unittest
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from validation.errors import InputError
from validation.fastdeploy.compiled_ops import CompiledOp

TEST_GLOB = "tests/operators/test_get_position_ids*.py"
_STUBBED = ("paddle", "fastdeploy")


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


@dataclass(frozen=True)
class VectorResult:
    file: str
    test: str
    outcome: str  # "passed", "failed", "error", "skipped"
    detail: str = ""


def _module_code(path: Path) -> tuple[types.CodeType, list[str]]:
    """The file's code without its paddle/fastdeploy imports, and the names it imported from fastdeploy."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError) as exc:
        raise InputError(str(path), f"cannot read FastDeploy's op test: {exc}") from None
    imported: list[str] = []
    body = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in _STUBBED:
            imported += [a.asname or a.name for a in node.names]
            continue
        if isinstance(node, ast.Import) and all(a.name.split(".")[0] in _STUBBED for a in node.names):
            continue
        if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
            continue
        body.append(node)
    tree.body = body
    return compile(tree, str(path), "exec"), imported


def run_op_tests(root: Path, ops: dict[str, CompiledOp]) -> list[VectorResult]:
    """Every test method of the checkout's position-op tests, run against ``ops``; an op the test imports
    but the checkout does not declare makes that file's tests errors naming it."""
    results = []
    for path in sorted(Path(root).glob(TEST_GLOB)):
        code, imported = _module_code(path)
        namespace: dict[str, Any] = {"__name__": f"fastdeploy_op_test_{path.stem}", "paddle": paddle_stand_in()}
        missing = [n for n in imported if n not in ops]
        namespace.update({n: bound_op(ops[n]) for n in imported if n in ops})
        rel = path.relative_to(root).as_posix()
        if missing:
            results.append(VectorResult(rel, "*", "error", f"imports {', '.join(missing)}, not compiled here"))
            continue
        exec(code, namespace)  # noqa: S102 - FastDeploy's own test code, the point of this module
        suite = unittest.TestSuite(
            unittest.defaultTestLoader.loadTestsFromTestCase(obj) for obj in list(namespace.values())
            if isinstance(obj, type) and issubclass(obj, unittest.TestCase))
        tests = _tests(suite)  # before the run: a suite drops its tests as it runs them
        outcome = unittest.TestResult()
        suite.run(outcome)
        bad = {t.id(): ("failed", msg) for t, msg in outcome.failures} | {
            t.id(): ("error", msg) for t, msg in outcome.errors} | {t.id(): ("skipped", msg) for t, msg in outcome.skipped}
        for test in tests:
            kind, msg = bad.get(test.id(), ("passed", ""))
            results.append(VectorResult(rel, test.id().rsplit(".", 2)[-2] + "." + test.id().rsplit(".", 1)[-1],
                                        kind, msg.strip().splitlines()[-1] if msg.strip() else ""))
    return results


def _tests(suite: unittest.TestSuite) -> list[unittest.TestCase]:
    out: list[unittest.TestCase] = []
    for item in suite:
        out += _tests(item) if isinstance(item, unittest.TestSuite) else [item]
    return out
