"""Reading JSON-lines files one object at a time, with errors that name the file, the line and the byte.

Why its own module: prompts, responses and a run's store are all JSONL written by other programs (or
by a process that was killed mid-line), and a bad byte or a broken line must become one line naming
where it is (exit 2), never a ``UnicodeDecodeError`` traceback from deep inside a loop.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from validation.errors import InputError


def iter_objects(path: Path, *, torn_tail_ok: bool = False) -> Iterator[tuple[int, int, dict[str, Any]]]:
    """Yield ``(line number, byte offset, object)`` for each non-blank line of ``path``.

    Raises InputError naming the file, line and byte offset for bytes that are not UTF-8, lines that
    are not JSON, and JSON that is not an object. With ``torn_tail_ok`` a last line that has no
    newline (a write cut short by a kill: every record is written with its newline in one call) is
    skipped instead, whatever it holds.
    """
    blob = path.read_bytes()
    offset = 0
    number = 0
    while offset < len(blob):
        number += 1
        end = blob.find(b"\n", offset)
        complete = end != -1
        raw = blob[offset:end if complete else len(blob)]
        start, offset = offset, (end + 1 if complete else len(blob))
        if torn_tail_ok and not complete:
            return
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(str(path), f"not UTF-8 (byte 0x{raw[exc.start]:02x} at byte offset "
                             f"{start + exc.start})", index=f"line {number}") from None
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise InputError(str(path), f"not valid JSON: {getattr(exc, 'msg', exc)}",
                             index=f"line {number}") from None
        if not isinstance(row, dict):
            raise InputError(str(path), "each line must be a JSON object", index=f"line {number}")
        yield number, start, row
