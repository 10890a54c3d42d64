"""FastDeploy's own op tests as peer vectors, run op-level against a checkout's ops with real Paddle.

``op_test_files`` reads and runs the test files; here the names they imported from ``fastdeploy`` are bound to
the checkout's ops as ``OpProvider`` runs them (compiled kernels where CUDA is, the named models otherwise), and
``paddle.set_device("gpu")`` and ``paddle.CUDAPlace`` follow the device the ops run on. These inputs need not be
states a server produces (a prefill chunk that contributes no tokens, say), so results are labelled op-level and
never enter a verdict on server states.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from validation.fastdeploy.checkout import Checkout
from validation.fastdeploy.op_provider import OpProvider
from validation.fastdeploy.op_test_files import OpTestResult, run_test_file, test_files
from validation.impls.paddle_runtime import device, paddle


class _Paddle:
    """``paddle`` for a GPU test run where the ops run: ``set_device`` and ``CUDAPlace`` map to Paddle's device."""

    def set_device(self, _name: str) -> Any:
        return paddle().set_device(device())

    def CUDAPlace(self, _index: int = 0) -> Any:  # noqa: N802 - Paddle's own name
        return paddle().CPUPlace() if device() == "cpu" else paddle().CUDAPlace(0)

    def __getattr__(self, name: str) -> Any:
        return getattr(paddle(), name)


@dataclass
class OpTestRun:
    """All op tests of one checkout, and which op implementation ran each op."""

    commit: str
    results: list[OpTestResult] = field(default_factory=list)
    origins: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(r.outcome == "passed" for r in self.results)


def run_op_tests(checkout: Checkout) -> OpTestRun:
    """Every ``test_get_position_ids*.py`` of the checkout, op-level."""
    run = OpTestRun(checkout.commit)
    provider = OpProvider(checkout)
    available = provider.namespace()
    for path in test_files(checkout.root):
        run.results.extend(run_test_file(checkout.root, path, _Paddle(), available, "which no provider here runs"))
    run.origins = provider.describe()
    return run
