"""FastDeploy's own op tests (``tests/operators/test_get_position_ids*.py``), read and run with stand-in imports.

The tests hold inputs and the outputs FastDeploy's authors expect for these kernels. Their modules import Paddle
and the built ``fastdeploy`` package, which this suite never imports, so each file is parsed (``ast``), its
``paddle``/``fastdeploy`` imports are dropped, and its own code runs in a namespace where ``paddle`` and each
imported op are what the caller supplies: the Paddle half (``op_tests``) binds Paddle and the checkout's ops
through ``OpProvider``; the GPU half (``op_test_vectors``) binds a numpy ``paddle`` and the compiled kernels.
Then the ``unittest`` cases run, assertions and all, at most ``MAX_TESTS`` per file. These are op-level inputs
(some are not states a server produces): callers label the results op-level.
"""

from __future__ import annotations

import ast
import builtins
import types
import unittest
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from validation.errors import InputError

OP_TESTS_GLOB = "tests/operators/test_get_position_ids*.py"
MAX_TESTS = 200
_STUBBED = ("paddle", "fastdeploy")


@dataclass(frozen=True)
class OpTestResult:
    """One test method of one file."""

    file: str
    test: str  # Class.method
    outcome: str  # passed, failed, error, skipped
    detail: str = ""


def test_files(root: Path) -> list[Path]:
    return sorted(Path(root).glob(OP_TESTS_GLOB))


def read_test_module(path: Path) -> tuple[types.CodeType, list[str]]:
    """The file's code without its paddle/fastdeploy imports (and its ``__main__`` block), and the names it
    imported from fastdeploy."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError, UnicodeDecodeError) as exc:
        raise InputError(str(path), f"cannot read FastDeploy's op test ({type(exc).__name__})") from None
    imported: list[str] = []
    body = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in _STUBBED:
            imported += [a.asname or a.name for a in node.names]
            continue
        if isinstance(node, ast.Import):
            node.names = [a for a in node.names if a.name.split(".")[0] not in _STUBBED]
            if not node.names:
                continue
        if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
            continue
        body.append(node)
    tree.body = body
    return compile(tree, str(path), "exec"), imported


def run_test_file(root: Path, path: Path, paddle: Any, ops: Mapping[str, Callable[..., Any]],
                  not_available: str) -> list[OpTestResult]:
    """Every test method of one op-test file with ``paddle`` and ``ops`` bound; an op the file imports but
    ``ops`` lacks makes the file one error naming it (``not_available`` says why)."""
    rel = path.relative_to(root).as_posix()
    code, imported = read_test_module(path)
    missing = [n for n in imported if n not in ops]
    if missing:
        return [OpTestResult(rel, "*", "error", f"imports {', '.join(missing)}, {not_available}")]
    namespace: dict[str, Any] = {"__builtins__": builtins, "__name__": f"fastdeploy_op_test_{path.stem}",
                                 "paddle": paddle, **{n: ops[n] for n in imported}}
    exec(code, namespace)  # noqa: S102 - FastDeploy's own test code, its imports replaced: the point of this module
    results = []
    for case in [v for v in namespace.values() if isinstance(v, type) and issubclass(v, unittest.TestCase)]:
        for test in list(unittest.defaultTestLoader.loadTestsFromTestCase(case))[:MAX_TESTS]:
            outcome = unittest.TestResult()
            test.run(outcome)
            name = test.id().split(".", 1)[-1]
            bad = [("error", m) for _, m in outcome.errors] + [("failed", m) for _, m in outcome.failures] + [
                ("skipped", m) for _, m in outcome.skipped]
            kind, message = bad[0] if bad else ("passed", "")
            results.append(OpTestResult(rel, name, kind, message.strip().splitlines()[-1] if message.strip() else ""))
    return results
