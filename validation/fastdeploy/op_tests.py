"""FastDeploy's own op tests as peer vectors, run op-level against a checkout's ops.

``tests/operators/test_get_position_ids*.py`` of a checkout hold inputs and expected outputs that FastDeploy's
authors wrote for these kernels. Their module is taken by ``ast``: its ``fastdeploy`` imports are dropped and the
names they imported are bound to the checkout's ops as ``OpProvider`` runs them here (compiled kernels where
CUDA is, the named models otherwise); ``paddle.set_device("gpu")`` and ``paddle.CUDAPlace`` follow the device
the ops run on. Then its ``unittest`` cases run, assertions and all. These inputs need not be states a server
produces (a prefill chunk that contributes no tokens, say), so results are labelled op-level and never enter a
verdict on server states; a file is bounded to ``MAX_TESTS`` test methods.
"""

from __future__ import annotations

import ast
import builtins
import unittest
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from validation.errors import InputError
from validation.fastdeploy.checkout import OP_TESTS_DIR, Checkout
from validation.fastdeploy.op_provider import OpProvider
from validation.impls.paddle_runtime import device, paddle

PATTERN = "test_get_position_ids*.py"
MAX_TESTS = 200


class _Paddle:
    """``paddle`` for a GPU test run where the ops run: ``set_device`` and ``CUDAPlace`` map to Paddle's device."""

    def set_device(self, _name: str) -> Any:
        return paddle().set_device(device())

    def CUDAPlace(self, _index: int = 0) -> Any:  # noqa: N802 - Paddle's own name
        return paddle().CPUPlace() if device() == "cpu" else paddle().CUDAPlace(0)

    def __getattr__(self, name: str) -> Any:
        return getattr(paddle(), name)


@dataclass
class OpTestResult:
    """One test method of one file."""

    file: str
    test: str
    outcome: str  # passed, failed, error
    detail: str = ""


@dataclass
class OpTestRun:
    """All op tests of one checkout, and which op implementation ran each op."""

    commit: str
    results: list[OpTestResult] = field(default_factory=list)
    origins: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(r.outcome == "passed" for r in self.results)


def _strip_imports(tree: ast.Module) -> tuple[ast.Module, list[str]]:
    """The module without its ``fastdeploy`` and ``paddle`` imports, and the op names the former imported."""
    ops: list[str] = []
    body = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("fastdeploy"):
            ops.extend(alias.asname or alias.name for alias in node.names)
            continue
        if isinstance(node, ast.Import) and any(alias.name == "paddle" for alias in node.names):
            continue
        body.append(node)
    return ast.Module(body=body, type_ignores=[]), ops


def run_op_tests(checkout: Checkout) -> OpTestRun:
    """Every ``test_get_position_ids*.py`` of the checkout, op-level."""
    run = OpTestRun(checkout.commit)
    files = sorted((checkout.root / OP_TESTS_DIR).glob(PATTERN))
    provider = OpProvider(checkout)
    available = provider.namespace()
    for path in files:
        run.results.extend(_run_file(checkout, path, provider, available))
    run.origins = provider.describe()
    return run


def _run_file(checkout: Checkout, path: Path, provider: OpProvider, available: dict[str, Any]) -> list[OpTestResult]:
    relpath = str(path.relative_to(checkout.root))
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (SyntaxError, OSError, UnicodeDecodeError) as exc:
        raise InputError("fastdeploy", f"{path}: does not parse as Python ({type(exc).__name__})") from None
    module, ops = _strip_imports(tree)
    missing = [op for op in ops if op not in available]
    if missing:
        return [OpTestResult(relpath, "*", "error", f"imports {', '.join(missing)}, which no provider here runs")]
    namespace: dict[str, Any] = {"__builtins__": builtins, "__name__": f"fastdeploy_op_test_{path.stem}",
                                 "paddle": _Paddle(), **{op: available[op] for op in ops}}
    exec(compile(module, str(path), "exec"), namespace)  # noqa: S102 - FastDeploy's own test, its imports replaced
    cases = [v for v in namespace.values() if isinstance(v, type) and issubclass(v, unittest.TestCase)]
    results = []
    for case in cases:
        for test in list(unittest.defaultTestLoader.loadTestsFromTestCase(case))[:MAX_TESTS]:
            outcome = unittest.TestResult()
            test.run(outcome)
            name = test.id().split(".", 1)[-1]
            if outcome.errors or outcome.failures:
                kind = "error" if outcome.errors else "failed"
                text = (outcome.errors or outcome.failures)[0][1].strip().splitlines()[-1]
                results.append(OpTestResult(relpath, name, kind, text))
            else:
                results.append(OpTestResult(relpath, name, "passed"))
    return results
