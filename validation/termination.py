"""SIGTERM handled as Ctrl-C is, for the commands that have something to tidy or report when stopped.

Why: a CI job's timeout, ``kill`` and service managers send SIGTERM, not SIGINT. By default it ends the process
where it stands: a fuzz run's workers were left fuzzing and ``ifeval run`` said nothing of the answers it kept.
Inside ``sigterm_raises()`` SIGTERM raises ``Terminated``, a ``KeyboardInterrupt``, so the same ``finally`` blocks
and reports run, and the command exits 143 (``validation.cli.entry``) where Ctrl-C exits 130.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


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
