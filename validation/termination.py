"""SIGTERM handled as Ctrl-C is, for the commands that have something to tidy or report when stopped.

Why: a CI job's timeout, ``kill`` and service managers send SIGTERM, not SIGINT. By default it ends the process
where it stands: a fuzz run's workers were left fuzzing and ``ifeval run`` said nothing of the answers it kept.
Inside ``sigterm_raises()`` SIGTERM raises ``Terminated``, a ``KeyboardInterrupt``, so the same ``finally`` blocks
and reports run, and the command exits 143 (``validation.cli.entry``) where Ctrl-C exits 130. An event loop run by
``run_async`` takes SIGTERM as ``asyncio.run`` takes Ctrl-C: it cancels the main task, then raises ``Terminated``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the main thread was."""

    signal_name = "SIGTERM"


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block SIGTERM raises ``Terminated``; after it the previous disposition is back. Only the main
    thread can set a handler: elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: object) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:  # a handler installed from C reads back as None: the default is what is left to restore
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)``, where SIGTERM stops the run as ``asyncio.run`` stops it for Ctrl-C, then raises
    ``Terminated``.

    Why: ``Terminated`` raised from a signal handler lands in whichever task's step is running. Where that is a
    task the main task awaits, the main task takes the failure while ``asyncio.run`` shuts the loop, nobody reads
    it, and asyncio prints "Task exception was never retrieved" and a traceback after the command's one-line report.
    Here SIGTERM, wherever it lands, cancels the main task instead: every ``finally`` in it runs as the cancellation
    unwinds, and ``Terminated`` is raised only after the loop has closed. A SIGTERM before the loop has started, or
    off the main thread (where no handler can be set, and this is plain ``asyncio.run``), is handled as before.
    """
    terminated = False

    async def guarded() -> T | None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()

        def on_sigterm() -> None:
            nonlocal terminated
            terminated = True
            task.cancel()

        previous = signal.getsignal(signal.SIGTERM)
        loop.add_signal_handler(signal.SIGTERM, on_sigterm)
        try:
            return await main
        except asyncio.CancelledError:
            if terminated:
                return None
            raise
        finally:  # asyncio restores SIG_DFL on removal: put back what was there (``sigterm_raises``' handler)
            loop.remove_signal_handler(signal.SIGTERM)
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)

    if threading.current_thread() is not threading.main_thread():
        return asyncio.run(main)
    result = asyncio.run(guarded())
    if terminated:
        raise Terminated()
    return result  # type: ignore[return-value]
