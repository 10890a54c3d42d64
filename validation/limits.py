"""The largest state the suite will run, and the one reader of state and case files.

Why limits: a state's scalars ask for memory no file pays for. ``padded_num_tokens: 100000000`` is
one line of JSON, yet the launch it names sizes the batch-id buffer, the oracle's rows and every
consumer's slot array; ``max_num_batched_tokens`` sizes the persistent buffers. Each size a state can
ask for is bounded here, well above anything a FastDeploy server runs (DeepSeek-V3.2's longest
context is 163,840 tokens, ``FDConfig.check()`` caps ``max_num_seqs`` at 512), and a larger one is
refused with one line naming the field, before anything is allocated. The rest of the work (the
table, the lengths) is proportional to the file, whose size is bounded too.

Why one reader: a state file that is not UTF-8, not JSON, nested without end or too large must end
in one line naming the file and where it broke (exit 2), never a traceback, wherever it is read.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from validation.errors import InputError

# Launch rows (padded_num_tokens, launch_num_tokens), the real token count and the persistent buffers
# (max_num_batched_tokens): 2**18 covers an unchunked prefill of the longest context (163,840) with room.
MAX_TOKENS = 1 << 18
# Requests in one batch (bsz): the op-level class "more than 1024 requests" needs > 1024; the engine caps 512.
MAX_REQUESTS = 4096
# Block-table cells (bsz * max_blocks, rows past bsz included): 163,840 blocks in a row at block size 1, 12 such rows.
MAX_TABLE_CELLS = 1 << 21
# Tokens per block: any size a real allocator can be configured with. No memory here is sized by it (a
# table's cells and the token counts are bounded above), so the bound is the type the cache writers take
# it as: ``const int block_size`` (``ds_mla_cache_kernel.cuh@2d8338f9e4e6:94,202``) [read], int32.
# FastDeploy's DSA path runs 64 (``deepseek_v3.py@2d8338f9e4e6:720`` hard-codes it); the sweep goes to 256.
MAX_BLOCK_SIZE = 2**31 - 1
# Earlier steps a case file may replay before its state (a multi-step counterexample is tens of steps).
MAX_HISTORY = 1024
# Bytes of a state or case file: a table at MAX_TABLE_CELLS of 10-digit ids is about 24 MiB of JSON.
MAX_FILE_BYTES = 64 << 20

LIMITS = {
    "padded_num_tokens": MAX_TOKENS,
    "launch_num_tokens": MAX_TOKENS,
    "max_num_batched_tokens": MAX_TOKENS,
    "block_size": MAX_BLOCK_SIZE,
}


def check_sizes(data: Mapping[str, Any]) -> None:
    """Refuse a state (a mapping, before its fields are converted) that asks for more than the limits.

    Only sizes are checked here, cheaply (lengths and scalars); types and values are the state's own rules.
    """
    for name, limit in LIMITS.items():
        value = data.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > limit:
            raise InputError(name, f"{value} is over the suite's limit of {limit} (validation/limits.py)")
    lens = data.get("seq_lens_this_time")
    bsz = _length(lens)
    if bsz is not None and bsz > MAX_REQUESTS:
        raise InputError("seq_lens_this_time", f"{bsz} requests is over the suite's limit of {MAX_REQUESTS} "
                         "(validation/limits.py)")
    if isinstance(lens, (list, tuple)):
        total = sum(v for v in lens if isinstance(v, int) and not isinstance(v, bool) and v > 0)
        if total > MAX_TOKENS:
            raise InputError("seq_lens_this_time", f"{total} tokens in one step is over the suite's limit of "
                             f"{MAX_TOKENS} (validation/limits.py)")
    cells = 0
    for name in ("block_tables", "block_tables_past_bsz"):
        rows = data.get(name)
        if isinstance(rows, (list, tuple)):
            cells += sum(len(r) if isinstance(r, (list, tuple)) else 1 for r in rows)
        elif hasattr(rows, "size"):
            cells += int(rows.size)
    if cells > MAX_TABLE_CELLS:
        raise InputError("block_tables", f"{cells} cells is over the suite's limit of {MAX_TABLE_CELLS} "
                         "(validation/limits.py)")


def _length(value: Any) -> int | None:
    if isinstance(value, (list, tuple)):
        return len(value)
    shape = getattr(value, "shape", None)
    return int(shape[0]) if shape else None


def read_json(path: str | Path, what: str = "state file") -> Any:
    """Parse a JSON file; every way it can be unreadable is an ``InputError`` naming the file."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise InputError(str(path), f"cannot read {what} ({exc.strerror or exc})") from None
    if len(raw) > MAX_FILE_BYTES:
        raise InputError(str(path), f"{what} is over the suite's limit of {MAX_FILE_BYTES} bytes (validation/limits.py)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(str(path), f"{what} is not UTF-8: byte 0x{raw[exc.start]:02x} at byte offset {exc.start} "
                         f"({exc.reason})") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise InputError(str(path), f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except RecursionError:  # the parser recurses per nesting level: thousands of brackets exhaust it
        raise InputError(str(path), "JSON nested thousands of levels deep: not a state or case file") from None
    except _Unreadable as exc:
        raise InputError(str(path), str(exc)) from None
    except ValueError:  # int() past Python's int-string limit (sys.get_int_max_str_digits(), 4300 by default)
        raise InputError(str(path), _too_many_digits(text)) from None


class _Unreadable(ValueError):
    """A number JSON can spell but no field can hold (NaN, Infinity, 1e999)."""


def _refuse_constant(name: str) -> float:
    raise _Unreadable(f"the number {name} is not finite")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        shown = literal if len(literal) <= 40 else literal[:37] + "..."
        raise _Unreadable(f"the number {shown} is not finite as a float")
    return value


def _too_many_digits(text: str) -> str:
    """Where the first integer literal past Python's int-string limit starts, as line and column."""
    limit = sys.get_int_max_str_digits() or 4300
    found = re.search(rf"\d{{{limit + 1},}}", text)
    if found is None:
        return f"a number has more than {limit} digits (Python's int-string limit)"
    line = text.count("\n", 0, found.start()) + 1
    column = found.start() - (text.rfind("\n", 0, found.start()) + 1) + 1
    return (f"the number at line {line} column {column} has {found.end() - found.start()} digits, more than "
            f"Python's int-string limit of {limit}")
