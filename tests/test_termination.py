"""Stopping a command: SIGTERM ends it, Ctrl-C and SIGTERM end a fuzz run with a partial report, and no worker
outlives its parent.

Why: Paddle's import installs a C++ SIGTERM handler that can deadlock (a ``check`` sent SIGTERM hung in 2 of 10
trials, ``benchmarks/bench_stop.py``), and
a fuzz run's parent killed by SIGTERM left both its workers fuzzing on for the rest of the nightly profile.
Every test drives a real process with real signals.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from support import ROOT, requires_paddle

# Two properties on two workers: determinism ends within seconds, truth runs for half a minute (nightly profile).
FUZZ = [sys.executable, "-m", "validation.cli", "fuzz", "--profile", "nightly", "--properties", "determinism,truth",
        "--jobs", "2"]


@requires_paddle
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the caught-signal mask from /proc (Linux)")
def test_importing_paddle_through_the_suite_leaves_sigterm_uncaught() -> None:
    # The kernel's view (SigCgt), not signal.getsignal: Python's table never sees a handler installed from C.
    probe = ("import re, signal; from validation.impls.paddle_runtime import paddle; paddle(); "
             "caught = int(re.search(r'SigCgt:\\s*(\\w+)', open('/proc/self/status').read()).group(1), 16); "
             "print(bool(caught >> (signal.SIGTERM - 1) & 1), bool(caught >> (signal.SIGSEGV - 1) & 1))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.stdout.split() == ["False", "True"], out.stdout + out.stderr[-500:]  # Paddle keeps its SIGSEGV one


@requires_paddle
def test_sigterm_ends_a_running_paddle_loop_at_once() -> None:
    loop = ("from validation.impls.paddle_runtime import paddle; pd = paddle(); x = pd.ones([1000]); "
            "print('ready', flush=True)\nwhile True: x = (x + 1)[:1000]")
    child = subprocess.Popen([sys.executable, "-c", loop], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    try:
        assert child.stdout.readline() == b"ready\n"
        time.sleep(0.5)
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=20) == -signal.SIGTERM
    finally:
        child.kill()
        child.communicate()


# SIGTERM lands while a worker task gathered by the main task runs (a busy step, no await): the moment that once left
# asyncio printing "Task exception was never retrieved" and a traceback after ``ifeval run``'s one-line report (a CI
# run of test_ifeval_runner's SIGTERM case). The raise-anywhere handler failed the worker, the main task took the
# failure while the loop was being shut, and nobody read it.
_ASYNC_STOP = """
import asyncio, gc, os, signal, time
from validation.termination import Terminated, run_async, sigterm_raises

async def worker():
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.2)  # still inside this task's step when the signal arrives
    await asyncio.sleep(600)  # longer than the test waits: only a cancellation ends it in time

async def main():
    try:
        await asyncio.gather(worker(), asyncio.sleep(600))
    finally:
        print("tidied", flush=True)

with sigterm_raises():
    try:
        run_async(main())
    except Terminated:
        print("terminated", flush=True)
    gc.collect()  # a task whose exception nobody read says so when collected
    print(signal.getsignal(signal.SIGTERM).__name__)  # sigterm_raises' handler is back, not asyncio's SIG_DFL
"""


def test_sigterm_inside_a_task_unwinds_the_run_and_raises_terminated_once_the_loop_is_closed() -> None:
    out = subprocess.run([sys.executable, "-c", _ASYNC_STOP], capture_output=True, text=True, cwd=ROOT, timeout=60)
    # the run is cut short, tidied, and only then stopped with Terminated
    assert out.returncode == 0 and out.stdout.split() == ["tidied", "terminated", "terminate"], out.stdout + out.stderr
    assert out.stderr == "", out.stderr  # no late "Task exception was never retrieved" and traceback


class _Fuzz:
    """A fuzz process in a session of its own (as a terminal's job), its stderr read line by line as it comes."""

    def __init__(self, out: Path) -> None:
        self.process = subprocess.Popen(
            [*FUZZ, "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, text=True,
            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.process.stderr), daemon=True)
        self._reader.start()

    def wait_for_first_property(self) -> list[int]:
        """Wait until a property has ended (its progress line); every worker pid seen meanwhile (the worker whose
        share was that property alone may have ended already)."""
        deadline = time.monotonic() + 240
        seen: set[int] = set()
        while not any(line.startswith("determinism:") for line in self.lines):
            assert time.monotonic() < deadline and self.process.poll() is None, "".join(self.lines)[-2000:]
            seen.update(_children(self.process.pid))
            time.sleep(0.02)
        seen.update(_children(self.process.pid))
        assert len(seen) >= 2, seen  # the two workers (and any short-lived probe the parent ran)
        return sorted(seen)

    def finish(self) -> tuple[int, str, str]:
        stdout = self.process.stdout.read()
        code = self.process.wait(timeout=30)
        self._reader.join(timeout=10)
        return code, stdout, "".join(self.lines)


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _gone(pids: list[int], within_s: float = 10.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        alive = [p for p in pids if Path(f"/proc/{p}").exists() and "State:\tZ" not in _status(p)]
        if not alive:
            return True
        time.sleep(0.05)
    return False


def _status(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return "State:\tZ"


@requires_paddle
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads worker pids from /proc (Linux)")
@pytest.mark.parametrize(("how", "code", "name"), [("sigterm", 143, "SIGTERM"), ("ctrl-c", 130, "SIGINT")])
def test_a_stopped_fuzz_run_reports_what_ended_and_leaves_no_worker(tmp_path: Path, how: str, code: int,
                                                                   name: str) -> None:
    fuzz = _Fuzz(tmp_path / "out")
    try:
        workers = fuzz.wait_for_first_property()
        if how == "sigterm":
            fuzz.process.send_signal(signal.SIGTERM)  # to the parent alone, as a CI job's timeout sends it
        else:
            os.killpg(fuzz.process.pid, signal.SIGINT)  # to the whole group, as a terminal's Ctrl-C
        exit_code, stdout, stderr = fuzz.finish()
    finally:
        fuzz.process.kill()
    assert exit_code == code, stderr[-2000:]
    assert f"INTERRUPTED by {name}: a partial report" in stdout and "not finished: truth" in stdout, stdout
    assert "  determinism: " in stdout and stdout.rstrip().endswith(f"exit {code}")
    truth = next(line for line in stdout.splitlines() if line.startswith("  truth: "))
    assert truth.endswith(f"(cut short by {name})") and int(truth.split()[1]) > 0, truth  # its states so far
    assert "Traceback" not in stderr, stderr[-3000:]
    assert _gone(workers), "a worker outlived the run"


@requires_paddle
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the kernel's parent-death signal is Linux's")
def test_workers_die_with_a_parent_killed_outright(tmp_path: Path) -> None:
    fuzz = _Fuzz(tmp_path / "out")
    try:
        workers = fuzz.wait_for_first_property()
        fuzz.process.kill()  # SIGKILL: no handler, no finally; only the kernel can take the workers down
        fuzz.process.wait(timeout=30)
    finally:
        fuzz.process.kill()
    assert _gone(workers), "a worker outlived its SIGKILLed parent"
