"""Lazy access to Paddle, and the two facts about Paddle's indexing the faithful models depend on.

Paddle is an optional extra: importing this module never imports Paddle; ``paddle()`` does, and
raises ``MissingDependency`` naming the extra when it is absent. ``indexing_semantics()`` runs Paddle
once on a tiny table to learn what it does with a row index of -1 and with a column past a row,
so the models reproduce what this Paddle build really does instead of what we guess.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType

from validation.errors import MissingDependency


@functools.cache
def paddle() -> ModuleType:
    """Import Paddle once, quietly, keeping the process's SIGTERM disposition; raise ``MissingDependency`` when
    Paddle is not installed. Every module of the suite that uses Paddle imports it through here."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    try:
        with warnings.catch_warnings(), _sigterm_kept():
            warnings.simplefilter("ignore")
            import paddle as _paddle  # noqa: PLC0415 - optional dependency
    except ImportError:
        raise MissingDependency("paddlepaddle", "cpu", "the Paddle models of FastDeploy's code paths") from None
    return _paddle


@contextlib.contextmanager
def _sigterm_kept() -> Iterator[None]:
    """Put back the SIGTERM disposition Paddle's import replaces.

    Why: the import installs a C++ handler that prints a stack trace from inside the signal handler, which is not
    async-signal-safe: a ``check`` sent SIGTERM mid-run hung in 2 of 10 tries (Paddle 3.3.1 CPU,
    ``benchmarks/bench_stop.py``, BENCHMARKS "Stopping a command"),
    so a CI job's timeout or ``kill`` could leave a process that never ends. Python's disposition (terminate, or
    a command's own handler) ends it at once. Only the main thread can set a handler; elsewhere nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if before is None else before)


def available() -> bool:
    """Whether Paddle can be imported here (for skips with a printed reason)."""
    try:
        paddle()
    except MissingDependency:
        return False
    return True


def device() -> str:
    """Paddle's current device, e.g. ``cpu`` or ``gpu:0``."""
    return str(paddle().device.get_device())


@dataclass(frozen=True)
class IndexingSemantics:
    """What ``table[rows, cols]`` does on this Paddle build for out-of-range rows."""

    negative_row_wraps: bool  # True: row -1 reads the last row; False: Paddle raises
    negative_col_wraps: bool = True  # True: column -1 reads the row's last column (a stale negative position)

    def describe(self) -> str:
        row = "wraps to the last row" if self.negative_row_wraps else "raises"
        col = "wraps to the row's last column" if self.negative_col_wraps else "does not wrap"
        return f"Paddle {paddle().__version__} on {device()}: block_tables[-1, j] {row}; block_tables[i, -1] {col}"


@functools.cache
def indexing_semantics() -> IndexingSemantics:
    """Probe Paddle: gather row -1, then column -1, from a 2x2 table and see what comes back."""
    pd = paddle()
    table = pd.to_tensor([[10, 20], [30, 40]], dtype="int32")
    rows = pd.to_tensor([-1], dtype="int32")
    cols = pd.to_tensor([0], dtype="int32")
    try:
        got = int(table[rows, cols].numpy()[0])
    except (IndexError, ValueError, RuntimeError, OSError):
        return IndexingSemantics(negative_row_wraps=False)
    # Column -1 of row 0: 20 when Paddle normalises the index per dimension (observed on 3.3.1 CPU).
    col = int(table[pd.to_tensor([0], dtype="int32"), pd.to_tensor([-1], dtype="int32")].numpy()[0])
    return IndexingSemantics(negative_row_wraps=got == 30, negative_col_wraps=col == 20)
