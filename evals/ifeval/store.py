"""A run's answers on disk: append-only JSON lines, each flushed and synced the moment it arrives.

Why: a nightly run costs hours of a multi-GPU server; a killed runner (SIGKILL, OOM, a lost node) must
lose nothing it had received. ``responses.jsonl`` holds one line per answer, written with a single
``write`` on an ``O_APPEND`` descriptor and ``fsync``-ed before the prompt counts as done; a resumed run
reads it back, skips a torn last line (a write cut short by the kill; that prompt is simply asked
again) and asks only what is missing, so the file ends with exactly one answer per prompt key.
Prompts that failed for good go to ``failures.jsonl`` (append-only too), so a prompt that keeps
failing is reported, never silently dropped. A lock file keeps two runners out of one folder.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evals.ifeval import jsonl
from validation import atomic_file
from validation.errors import InputError

RESPONSES = "responses.jsonl"
FAILURES = "failures.jsonl"
LOCK = ".lock"


@dataclass
class Loaded:
    """What a run folder's store held when opened."""

    answers: dict[int, dict[str, Any]] = field(default_factory=dict)
    torn_bytes: int = 0  # bytes of a torn last line that were cut off (0: none)
    duplicates: int = 0  # extra lines for an already answered key (kept out; never written by us)


def read_answers(path: Path, *, torn_tail_ok: bool = True) -> Loaded:
    """The answers of a ``responses.jsonl``: first line per key wins; bad lines are one-line errors."""
    loaded = Loaded()
    if not path.is_file():
        return loaded
    for number, _, row in jsonl.iter_objects(path, torn_tail_ok=torn_tail_ok):
        key = row.get("key")
        if isinstance(key, bool) or not isinstance(key, int) or not isinstance(row.get("response"), str):
            raise InputError(str(path), 'each line needs an integer "key" and a string "response"',
                             index=f"line {number}")
        if key in loaded.answers:
            loaded.duplicates += 1
            continue
        loaded.answers[key] = row
    return loaded


class Store:
    """The run folder's append-only files; ``open`` it, ``append`` answers and failures, ``close``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.responses = folder / RESPONSES
        self.failures = folder / FAILURES
        self._lock_fd = -1
        self._answers_fd = -1
        self._failures_fd = -1

    def open(self) -> Loaded:
        """Lock the folder, cut a torn last line off ``responses.jsonl``, return what it holds."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise InputError("--out", f"{self.folder} is in use by another run (lock {LOCK})") from None
        loaded = read_answers(self.responses)
        if self.responses.is_file():
            loaded.torn_bytes = _cut_torn_tail(self.responses)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
        self._answers_fd = os.open(self.responses, flags, 0o644)
        self._failures_fd = os.open(self.failures, flags, 0o644)
        return loaded

    def append_answer(self, record: dict[str, Any]) -> None:
        """Write one answer as one line and sync it to disk before returning."""
        _append(self._answers_fd, record)

    def append_failure(self, record: dict[str, Any]) -> None:
        _append(self._failures_fd, record)

    def close(self) -> None:
        for fd in (self._answers_fd, self._failures_fd, self._lock_fd):
            if fd >= 0:
                os.close(fd)
        self._answers_fd = self._failures_fd = self._lock_fd = -1


def _append(fd: int, record: dict[str, Any]) -> None:
    data = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    written = os.write(fd, data)
    while written < len(data):  # a regular file takes it whole; loop only for the pathological case
        written += os.write(fd, data[written:])
    os.fsync(fd)


def _cut_torn_tail(path: Path) -> int:
    """Truncate the file after its last newline if it does not end with one; return the bytes cut."""
    size = path.stat().st_size
    if size == 0:
        return 0
    with path.open("rb+") as handle:
        handle.seek(max(0, size - 1))
        if handle.read(1) == b"\n":
            return 0
        step = 1 << 16
        end = size
        while end > 0:
            start = max(0, end - step)
            handle.seek(start)
            chunk = handle.read(end - start)
            found = chunk.rfind(b"\n")
            if found != -1:
                keep = start + found + 1
                break
            end = start
        else:
            keep = 0
        handle.truncate(keep)
        handle.flush()
        os.fsync(handle.fileno())
    return size - keep


def write_json_atomic(path: Path, payload: Any) -> None:
    """Replace ``path`` with ``payload`` as JSON in one step (a reader never sees half a file)."""
    atomic_file.write_text(path, json.dumps(payload, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
