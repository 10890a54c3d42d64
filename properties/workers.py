"""The fuzzer's worker processes: each runs a share of the properties and reports after every property, so a
worker that dies (a plug-in or kernel that segfaults, ``os._exit``, the OOM killer) costs only what it was doing.

Why not ``ProcessPoolExecutor``: when one of its workers dies it breaks the whole pool, every other worker's
results are lost and the run ends in a ``BrokenProcessPool`` traceback. Here each worker is a process of its own
with a pipe back: it sends ``("start", name)`` before a property and its cumulative collector after it, so the
parent keeps the properties a dead worker finished, charges the crash to the property it was running (a failed
property: exit 1, a one-line reason in the report), and the other workers finish untouched. A worker whose
baseline cannot run sends why, and the parent stops every worker at once instead of waiting for them.
Ctrl-C and SIGTERM are the parent's to handle: it asks the workers for what they found so far (SIGUSR1), then
stops them, and a worker never outlives its parent (Linux's parent-death signal).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.context import BaseContext
from typing import Any

from properties.collector import Collector, PropertyStats
from properties.config import FuzzConfig
from properties.time_budget import ask_to_stop
from validation.termination import Terminated, sigterm_raises

# What a worker runs: (config, its share of the property names, send) -> why its baseline cannot run, or None.
Share = Callable[[FuzzConfig, Sequence[str], Callable[[tuple[str, Any]], None]], "str | None"]


class SharesInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM while the workers ran: what every property found until then (those it cut short are marked
    ``interrupted``), and which did not finish. A ``KeyboardInterrupt`` still, so a caller that does not report
    partial results stops as on Ctrl-C."""

    def __init__(self, collector: Collector, unfinished: list[str], signal_name: str) -> None:
        super().__init__(signal_name)
        self.collector = collector
        self.unfinished = unfinished
        self.signal_name = signal_name


@dataclass
class Outcome:
    """What every worker delivered: the merged collector, or why a baseline could not run."""

    collector: Collector
    baseline_failure: str | None = None


def run_shares(context: BaseContext, config: FuzzConfig, shares: Sequence[Sequence[str]], target: Share,
               on_property: Callable[[PropertyStats], None] | None = None) -> Outcome:
    """Run ``target`` once per share, each in its own process of ``context``; gather what they report."""
    workers = [_Worker(context, config, share, target) for share in shares]
    outcome = Outcome(Collector(config))
    live = list(workers)
    try:
        with sigterm_raises():  # a CI timeout stops the workers and gets the report, as Ctrl-C does
            _gather(live, config, outcome, on_property)
    except KeyboardInterrupt as stop:
        _collect_what_was_found(live, outcome)
        stats = outcome.collector.stats
        unfinished = [name for worker in workers for name in worker.share
                      if name not in stats or stats[name].interrupted]
        raise SharesInterrupted(outcome.collector, unfinished,
                                "SIGTERM" if isinstance(stop, Terminated) else "SIGINT") from None
    finally:
        for worker in workers:
            worker.stop()
    return outcome


def _gather(live: list[_Worker], config: FuzzConfig, outcome: Outcome,
            on_property: Callable[[PropertyStats], None] | None) -> None:
    """Read the workers' events until every worker has ended (``live`` shrinks as they do)."""
    while live:
        for worker, messages, ended in _events(live, 1.0):
            for kind, payload in messages:
                if kind == "baseline":
                    outcome.baseline_failure = payload
                    return  # the caller stops the others: nothing can be judged against it
                if kind == "start":
                    worker.running = payload
                elif kind == "done":
                    worker.collector, name, worker.running = payload, worker.running, None
                    if on_property and name in payload.stats:
                        on_property(payload.stats[name])
                elif kind == "error":
                    worker.error = payload
            if ended:
                live.remove(worker)
                for stats in worker.finish(config, outcome):
                    if on_property:
                        on_property(stats)


def _events(live: list[_Worker], timeout: float) -> Iterator[tuple[_Worker, list[tuple[str, Any]], bool]]:
    """Wait up to ``timeout`` for a worker to send or end, then yield each worker's waiting messages and whether it
    has ended. A worker has ended when its process has (waitpid), not when its pipe or sentinel closes: a child the
    code under test forked inherits both and may hold them open long after the worker died. Whether it ended is
    read before its messages: once it has ended, everything it sent is in the pipe."""
    wait([w.receiver for w in live if not w.closed] + [w.process.sentinel for w in live], timeout=timeout)
    for worker in list(live):
        ended = not worker.process.is_alive()
        yield worker, worker.pending(), ended


# How long an interrupted parent waits for its workers to send what they found so far (a property ends at its next
# state, and sends its collector at once; the reducer is skipped): beyond it, a worker's last snapshot is used.
STOP_GRACE_S = 3.0


def _collect_what_was_found(live: list[_Worker], outcome: Outcome) -> None:
    """After Ctrl-C or SIGTERM: ask each running worker to stop (SIGUSR1: its property ends at the next state, as
    when a time slice is spent, and it sends its collector), wait up to ``STOP_GRACE_S``, and fold in the latest
    collector each sent. Counterexamples are on disk already, written as they were found."""
    for worker in live:
        with contextlib.suppress(ProcessLookupError):
            if worker.process.pid is not None and worker.process.is_alive():
                os.kill(worker.process.pid, signal.SIGUSR1)
    until = time.monotonic() + STOP_GRACE_S
    running = list(live)
    while running and time.monotonic() < until:
        for worker, messages, ended in _events(running, max(0.0, until - time.monotonic())):
            for kind, payload in messages:
                if kind == "done":
                    worker.collector = payload
            if ended:
                running.remove(worker)
    for worker in live:
        if worker.collector:
            outcome.collector.merge(worker.collector)


class _Worker:
    """One worker process and the parent's view of it: the property it is running, its latest collector."""

    def __init__(self, context: BaseContext, config: FuzzConfig, share: Sequence[str], target: Share) -> None:
        self.share = list(share)
        self.running: str | None = None
        self.collector: Collector | None = None
        self.error: str | None = None
        self.closed = False  # its pipe reached EOF: only its process is waited for
        self.receiver, sender = context.Pipe(duplex=False)
        self.process = context.Process(target=_serve, args=(sender, config, self.share, target))
        self.process.start()
        sender.close()  # the parent keeps no writer: the pipe reaches EOF once the worker (and its children) close it

    def pending(self) -> list[tuple[str, Any]]:
        """The messages waiting in the pipe (once the worker has ended, everything it sent is there)."""
        messages: list[tuple[str, Any]] = []
        try:
            while self.receiver.poll():
                messages.append(self.receiver.recv())
        except (EOFError, OSError):
            self.closed = True  # the worker's end of the pipe is closed: its sentinel says how it ended
        return messages

    def finish(self, config: FuzzConfig, outcome: Outcome) -> list[PropertyStats]:
        """Fold in what the worker delivered; charge a death or an error to the property it was running, and
        mark the share's properties it never reached as failed, not run (a run that lost them must not pass)."""
        self.process.join()
        collector = self.collector or Collector(config)
        lost: list[PropertyStats] = []
        if not (self.error or self.running or self.process.exitcode):  # it ended its share (or stopped at a failure)
            outcome.collector.merge(collector)
            return lost
        death = f"its worker process {_death(self.process.exitcode)}"
        for name in self.share:
            if name in collector.stats:  # the latest snapshot holds exactly the properties that ended
                continue
            stats = collector.start(name)
            stats.failed = True
            if name != self.running:
                stats.error = f"not run: {self.error or death} before it started"
            else:
                stats.error = self.error or f"{death} while running it (a crash in the code under test; the " \
                    "findings it wrote are kept)"
            lost.append(stats)
        outcome.collector.merge(collector)
        return lost

    def stop(self) -> None:
        """SIGKILL, not SIGTERM: Paddle installs its own SIGTERM handler, and a worker forked from a process
        that had loaded Paddle hung in it (seen in the test suite). What a worker wrote is on disk, atomically."""
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.receiver.close()


def _death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"was killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"was killed by signal {-exitcode}"
    return f"exited with status {exitcode}"


def _serve(sender: Connection, config: FuzzConfig, share: list[str], target: Share) -> None:
    """The worker's main: run the share, send its events; an exception is sent as one line, not a traceback."""
    # Ctrl-C reaches the terminal's whole process group and a service manager's SIGTERM its whole cgroup: the
    # parent decides (it stops the workers and reports), so a worker neither dies half-way nor prints a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGUSR1, ask_to_stop)  # the interrupted parent asks for what was found so far
    _die_with_parent()
    try:
        failure = target(config, share, sender.send)
        if failure is not None:
            sender.send(("baseline", failure))
    except Exception as exc:  # noqa: BLE001 - whatever escapes a property run becomes that property's error
        sender.send(("error", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"))
    finally:
        sender.close()


# prctl(2) option: the signal the kernel sends this process when the thread that created it ends.
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Linux: the kernel SIGKILLs this worker when its parent ends, however it ends (SIGKILL, the OOM killer), so a
    killed fuzz run never leaves workers fuzzing on for the rest of a nightly budget. Elsewhere: nothing."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
