"""The step inputs of one forward step (SPEC section 2), and the rules a server's state obeys.

A ``BatchState`` is what a scheduler hands the model runner for one step. It is built from a dict
or a JSON file, derives the packed-token views the kernels read (``batch_id_per_token``,
``cu_seqlens_q``), and ``validate()`` rejects every state no engine could produce, so that a finding
is always about the code under test and never about an impossible input.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from validation.errors import InputError

INT32_MAX = 2**31 - 1
# The fields of a state file; anything else is a typo the user should hear about.
ARRAY_FIELDS = ("seq_lens_encoder", "seq_lens_decoder", "seq_lens_this_time", "block_tables")
SCALAR_FIELDS = ("block_size", "padded_num_tokens", "max_num_batched_tokens")
# ``name`` labels a state in reports; ``note`` is free text for humans and is not kept.
ALL_FIELDS = ARRAY_FIELDS + SCALAR_FIELDS + ("name", "note")


@dataclass(frozen=True)
class BatchState:
    """One step's batch: per-request lengths, block tables, and the launch geometry."""

    seq_lens_encoder: np.ndarray
    seq_lens_decoder: np.ndarray
    seq_lens_this_time: np.ndarray
    block_tables: np.ndarray
    block_size: int
    padded_num_tokens: int
    max_num_batched_tokens: int
    name: str = ""

    # ---- construction -------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, validate: bool = True) -> BatchState:
        """Build (and by default validate) a state from a JSON-like mapping or numpy arrays."""
        if not isinstance(data, Mapping):
            raise InputError("state", f"must be a JSON object, got {type(data).__name__}")
        for key in data:
            if key not in ALL_FIELDS:
                raise InputError(str(key), f"unknown field (expected one of: {', '.join(ALL_FIELDS)})")
        for key in ARRAY_FIELDS + ("block_size",):
            if key not in data:
                raise InputError(key, "required field is missing")
        lens = {k: _int_vector(k, data[k]) for k in ARRAY_FIELDS[:3]}
        tables = _int_matrix("block_tables", data["block_tables"], rows=len(lens["seq_lens_this_time"]))
        block_size = _int_scalar("block_size", data["block_size"], minimum=1)
        num_tokens = int(lens["seq_lens_this_time"].astype(np.int64).sum())
        padded = data.get("padded_num_tokens")
        padded = num_tokens if padded is None else _int_scalar("padded_num_tokens", padded, minimum=0)
        max_tokens = data.get("max_num_batched_tokens")
        max_tokens = (
            max(padded, num_tokens)
            if max_tokens is None
            else _int_scalar("max_num_batched_tokens", max_tokens, minimum=0)
        )
        state = cls(
            seq_lens_encoder=lens["seq_lens_encoder"],
            seq_lens_decoder=lens["seq_lens_decoder"],
            seq_lens_this_time=lens["seq_lens_this_time"],
            block_tables=tables,
            block_size=block_size,
            padded_num_tokens=padded,
            max_num_batched_tokens=max_tokens,
            name=str(data.get("name", "")),
        )
        if validate:
            state.validate()
        return state

    @classmethod
    def from_json(cls, path: str | Path) -> BatchState:
        """Load a state file; unreadable or malformed JSON is an ``InputError`` naming the file."""
        return load_steps(path)[-1]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form; ``from_dict(to_dict())`` round-trips."""
        out: dict[str, Any] = {}
        if self.name:
            out["name"] = self.name
        out.update(
            block_size=self.block_size,
            seq_lens_encoder=self.seq_lens_encoder.tolist(),
            seq_lens_decoder=self.seq_lens_decoder.tolist(),
            seq_lens_this_time=self.seq_lens_this_time.tolist(),
            block_tables=self.block_tables.tolist(),
            padded_num_tokens=self.padded_num_tokens,
            max_num_batched_tokens=self.max_num_batched_tokens,
        )
        return out

    def to_json(self) -> str:
        """Compact one-object JSON, rows of the block table kept on one line."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    # ---- derived views ------------------------------------------------------------------

    @property
    def bsz(self) -> int:
        return int(self.seq_lens_this_time.shape[0])

    @property
    def max_blocks(self) -> int:
        return int(self.block_tables.shape[1])

    @property
    def num_tokens(self) -> int:
        return int(self.seq_lens_this_time.astype(np.int64).sum())

    @property
    def cu_seqlens_q(self) -> np.ndarray:
        """int32 [bsz+1]: prefix sums of ``seq_lens_this_time``."""
        out = np.zeros(self.bsz + 1, dtype=np.int32)
        np.cumsum(self.seq_lens_this_time, out=out[1:])
        return out

    @property
    def batch_id_per_token(self) -> np.ndarray:
        """int32 [padded_num_tokens]: request of each packed token, -1 on CUDA-graph padding."""
        ids = np.repeat(np.arange(self.bsz, dtype=np.int32), self.seq_lens_this_time.astype(np.int64))
        pad = np.full(self.padded_num_tokens - ids.shape[0], -1, dtype=np.int32)
        return np.concatenate([ids, pad]).astype(np.int32)

    def step_inputs(self) -> dict[str, Any]:
        """The mapping the plug-in seam hands an implementation (fresh copies every call)."""
        return {
            "seq_lens_encoder": self.seq_lens_encoder.copy(),
            "seq_lens_decoder": self.seq_lens_decoder.copy(),
            "seq_lens_this_time": self.seq_lens_this_time.copy(),
            "block_tables": self.block_tables.copy(),
            "block_size": self.block_size,
            "batch_id_per_token": self.batch_id_per_token,
            "cu_seqlens_q": self.cu_seqlens_q,
            "num_tokens": self.num_tokens,
            "padded_num_tokens": self.padded_num_tokens,
            "max_num_batched_tokens": self.max_num_batched_tokens,
        }

    # ---- validation ---------------------------------------------------------------------

    def validate(self) -> BatchState:
        """Raise ``InputError`` for the first rule this state breaks; return self when it is possible."""
        bsz = self.bsz
        for field in ARRAY_FIELDS[:3]:
            arr = getattr(self, field)
            if arr.dtype != np.int32 or arr.ndim != 1:
                raise InputError(field, f"must be int32 of shape [bsz]; got {arr.dtype} {list(arr.shape)}")
            if arr.shape[0] != bsz:
                raise InputError(field, f"has {arr.shape[0]} entries but seq_lens_this_time has {bsz}")
        if self.block_tables.dtype != np.int32 or self.block_tables.ndim != 2 or self.block_tables.shape[0] != bsz:
            raise InputError(
                "block_tables",
                f"must be int32 of shape [bsz={bsz}, max_blocks]; got {self.block_tables.dtype} "
                f"{list(self.block_tables.shape)}",
            )
        enc, dec, this = self.seq_lens_encoder, self.seq_lens_decoder, self.seq_lens_this_time
        for field, arr in (("seq_lens_encoder", enc), ("seq_lens_decoder", dec), ("seq_lens_this_time", this)):
            bad = np.flatnonzero(arr < 0)
            if bad.size:
                raise InputError(field, f"must be >= 0, got {int(arr[bad[0]])}", int(bad[0]))
        for b in range(bsz):
            if enc[b] > 0 and this[b] != enc[b]:
                raise InputError(
                    "seq_lens_this_time", f"a prefilling request (seq_lens_encoder={int(enc[b])}) contributes exactly "
                    f"its prefill chunk this step, got {int(this[b])}", b)
            if enc[b] == 0 and this[b] > 0 and dec[b] == 0:
                raise InputError(
                    "seq_lens_decoder", "a decoding request (seq_lens_encoder=0, seq_lens_this_time>0) needs a "
                    "cached prefix: must be > 0", b)
        bad = np.argwhere(self.block_tables < -1)
        if bad.size:
            r, c = (int(x) for x in bad[0])
            raise InputError("block_tables", f"block ids are >= 0, or -1 for unallocated; got {int(self.block_tables[r, c])}", (r, c))
        if self.padded_num_tokens < self.num_tokens:
            raise InputError("padded_num_tokens", f"must be >= the real token count {self.num_tokens}, got {self.padded_num_tokens}")
        if self.max_num_batched_tokens < self.padded_num_tokens:
            raise InputError(
                "max_num_batched_tokens",
                f"the persistent buffers must hold the padded launch of {self.padded_num_tokens} tokens, "
                f"got {self.max_num_batched_tokens}")
        self._validate_written_blocks()
        return self

    def _validate_written_blocks(self) -> None:
        """Every real token lands on an allocated block of its own request, owned by that request alone."""
        bs, width = self.block_size, self.max_blocks
        writer: dict[int, tuple[int, int]] = {}
        for b in range(self.bsz):
            start = int(self.seq_lens_decoder[b])
            count = int(self.seq_lens_this_time[b])
            if count == 0:
                continue
            last = start + count - 1
            if last // bs >= width:
                raise InputError(
                    "block_tables", f"request {b} writes position {last} in logical block {last // bs}, "
                    f"past its table of {width} blocks", b)
            for logical in range(start // bs, last // bs + 1):
                block = int(self.block_tables[b, logical])
                if block < 0:
                    pos = max(start, logical * bs)
                    raise InputError(
                        "block_tables", f"real token at position {pos} of request {b} lies on an unallocated (-1) block",
                        (b, logical))
                if block in writer and writer[block] != (b, logical):
                    other, other_logical = writer[block]
                    raise InputError(
                        "block_tables", f"physical block {block} is written this step by request {other} (logical "
                        f"block {other_logical}) and request {b} (logical block {logical}): one block, one owner",
                        (b, logical))
                writer[block] = (b, logical)


def _int_vector(field: str, value: Any) -> np.ndarray:
    if isinstance(value, np.ndarray):
        if value.dtype != np.int32:
            raise InputError(field, f"must be int32, got {value.dtype}")
        if value.ndim != 1:
            raise InputError(field, f"must be 1-D [bsz], got shape {list(value.shape)}")
        return value.copy()
    if not isinstance(value, (list, tuple)):
        raise InputError(field, f"must be a list of integers, got {type(value).__name__}")
    for i, v in enumerate(value):
        _check_int(field, v, i)
    return np.asarray(value, dtype=np.int32).reshape(len(value))


def _int_matrix(field: str, value: Any, rows: int) -> np.ndarray:
    if isinstance(value, np.ndarray):
        if value.dtype != np.int32:
            raise InputError(field, f"must be int32, got {value.dtype}")
        if value.ndim != 2 or value.shape[0] != rows:
            raise InputError(field, f"must be [bsz={rows}, max_blocks], got shape {list(value.shape)}")
        return value.copy()
    if not isinstance(value, (list, tuple)):
        raise InputError(field, f"must be a list of rows, got {type(value).__name__}")
    if len(value) != rows:
        raise InputError(field, f"has {len(value)} rows but the batch has {rows} requests")
    width = None
    for r, row in enumerate(value):
        if not isinstance(row, (list, tuple)):
            raise InputError(field, f"each row must be a list of block ids, got {type(row).__name__}", r)
        if width is None:
            width = len(row)
        elif len(row) != width:
            raise InputError(field, f"rows must all have {width} entries (pad with -1), got {len(row)}", r)
        for c, v in enumerate(row):
            _check_int(field, v, (r, c))
    return np.asarray(value, dtype=np.int32).reshape(rows, width or 0)


def _int_scalar(field: str, value: Any, minimum: int) -> int:
    _check_int(field, value, None)
    if value < minimum:
        raise InputError(field, f"must be >= {minimum}, got {value}")
    return int(value)


def _check_int(field: str, value: Any, index: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(field, f"must be an integer, got {json.dumps(value) if _jsonable(value) else type(value).__name__}", index)
    if not -(2**31) <= int(value) <= INT32_MAX:
        raise InputError(field, f"must fit in int32, got {int(value)}", index)


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def load_steps(path: str | Path) -> list[BatchState]:
    """The steps a state file describes: a plain state is one step; a case file
    (``{"state": {...}, "history": [...]}``, as fixtures, regressions and counterexamples are written)
    is its earlier steps, then its state, to be run in order through the same instances."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(str(path), f"cannot read state file ({exc.strerror})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(str(path), f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    if not (isinstance(data, Mapping) and isinstance(data.get("state"), Mapping)):
        return [BatchState.from_dict(data)]
    history = data.get("history", [])
    if not isinstance(history, list):
        raise InputError("history", f"must be a list of states, got {type(history).__name__}")
    steps = []
    for i, step in enumerate(history):
        try:
            steps.append(BatchState.from_dict(step))
        except InputError as exc:
            raise InputError(f"history[{i}].{exc.field}", exc.rule, exc.index) from None
    return [*steps, BatchState.from_dict(data["state"])]
