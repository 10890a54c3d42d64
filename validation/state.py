"""The step inputs of one forward step (SPEC section 2), and the rules a server's state obeys.

A ``BatchState`` is what a scheduler hands the model runner for one step. It is built from a dict
or a JSON file, derives the packed-token views the kernels read (``batch_id_per_token``,
``cu_seqlens_q``), and ``validate()`` rejects every state no engine could produce, so that a finding
is always about the code under test and never about an impossible input.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from validation import limits
from validation.errors import InputError

INT32_MAX = 2**31 - 1
# The fields of a state file; anything else is a typo the user should hear about.
ARRAY_FIELDS = ("seq_lens_encoder", "seq_lens_decoder", "seq_lens_this_time", "block_tables")
SCALAR_FIELDS = ("block_size", "padded_num_tokens", "max_num_batched_tokens")
# What the runner's persistent buffers hold besides this step's inputs (SPEC 4a), all optional:
# ``launch_num_tokens`` the runner's token count (the overlap schedule's estimate, >= the real count),
# ``prior_position_ids`` the legacy model's uninitialised position buffer when it is allocated,
# ``block_tables_past_bsz`` the runner's block-table rows past ``bsz`` that a replayed graph still covers,
# ``batch_id_per_token`` the runner's batch-id buffer when it differs from the packing (-1 rows not written).
RUNNER_FIELDS = ("launch_num_tokens", "prior_position_ids", "block_tables_past_bsz", "batch_id_per_token")
# The same fields as BatchState attributes (the batch ids a runner wrote are kept as ``batch_ids_written``).
_RUNNER_ATTRIBUTES = frozenset(RUNNER_FIELDS) - {"batch_id_per_token"} | {"batch_ids_written"}
# ``name`` labels a state in reports; ``note`` is free text for humans and is not kept.
ALL_FIELDS = ARRAY_FIELDS + SCALAR_FIELDS + RUNNER_FIELDS + ("name", "note")
# FDConfig.check() asserts max_num_seqs <= 512 (SPEC 4a): a captured block table has at most this many rows.
MAX_NUM_SEQS = 512
# Every position a step writes fits int32: FastDeploy holds seq_lens_decoder and the position buffer as int32
# (fastdeploy/worker/input_batch.py:144 and :193 @2d8338f9e4e6) and #7960's kernel computes ``int pos_id``
# (custom_ops/gpu_ops/get_position_ids_and_slot_mapping.cu:46@7198b5883a0e), so a
# position past INT32_MAX wraps in the code under test and cannot be a state a server reaches.
POSITION_RULE = "FastDeploy's position buffers are int32 (fastdeploy/worker/input_batch.py:144,193@2d8338f9e4e6)"


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
    # The runner's buffers (SPEC 4a); the defaults are a runner that holds nothing surprising.
    launch_num_tokens: int | None = None  # None: the real token count
    prior_position_ids: np.ndarray | None = None  # None: the legacy buffer's memory happens to be zero
    block_tables_past_bsz: np.ndarray | None = None  # None: the captured table is the batch's own rows
    batch_ids_written: np.ndarray | None = None  # None: the packing of seq_lens_this_time, -1 on padding

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
        limits.check_sizes(data)  # before any field is converted: a size over the limits allocates nothing
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
        launch = data.get("launch_num_tokens")
        past = data.get("block_tables_past_bsz")
        prior = data.get("prior_position_ids")
        written = data.get("batch_id_per_token")
        state = cls(
            seq_lens_encoder=lens["seq_lens_encoder"],
            seq_lens_decoder=lens["seq_lens_decoder"],
            seq_lens_this_time=lens["seq_lens_this_time"],
            block_tables=tables,
            block_size=block_size,
            padded_num_tokens=padded,
            max_num_batched_tokens=max_tokens,
            name=str(data.get("name", "")),
            launch_num_tokens=None if launch is None else _int_scalar("launch_num_tokens", launch, minimum=0),
            prior_position_ids=None if prior is None else _int_vector("prior_position_ids", prior),
            block_tables_past_bsz=None if past is None else _int_matrix(
                "block_tables_past_bsz", past, rows=len(past) if isinstance(past, (list, tuple, np.ndarray)) else 0,
                width=tables.shape[1]),
            batch_ids_written=None if written is None else _int_vector("batch_id_per_token", written),
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
        # Runner fields only when set, so a state without them keeps its old JSON form.
        if self.launch_num_tokens is not None:
            out["launch_num_tokens"] = self.launch_num_tokens
        if self.prior_position_ids is not None:
            out["prior_position_ids"] = self.prior_position_ids.tolist()
        if self.block_tables_past_bsz is not None:
            out["block_tables_past_bsz"] = self.block_tables_past_bsz.tolist()
        if self.batch_ids_written is not None:
            out["batch_id_per_token"] = self.batch_ids_written.tolist()
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
    def launch_tokens(self) -> int:
        """The runner's token count this step (``ids_remove_padding`` rows): the real count, or the overlap
        schedule's cached estimate (``_resolve_current_launch_token_num``, SPEC 4a)."""
        return self.num_tokens if self.launch_num_tokens is None else self.launch_num_tokens

    @property
    def packed_batch_ids(self) -> np.ndarray:
        """int32 [padded_num_tokens]: request of each packed token, -1 on padding (what ``get_padding_offset`` writes)."""
        ids = np.repeat(np.arange(self.bsz, dtype=np.int32), self.seq_lens_this_time.astype(np.int64))
        pad = np.full(self.padded_num_tokens - ids.shape[0], -1, dtype=np.int32)
        return np.concatenate([ids, pad]).astype(np.int32)

    @property
    def batch_id_per_token(self) -> np.ndarray:
        """int32 [padded_num_tokens]: the runner's batch-id buffer as the kernels read it: the packing, unless
        the state says which real rows the pre-process left at the -1 the runner fills it with first."""
        return self.packed_batch_ids if self.batch_ids_written is None else self.batch_ids_written.copy()

    @property
    def past_rows(self) -> np.ndarray:
        """int32 [k, max_blocks]: the runner's block-table rows past ``bsz`` still covered by a replayed graph."""
        if self.block_tables_past_bsz is None:
            return np.zeros((0, self.max_blocks), dtype=np.int32)
        return self.block_tables_past_bsz.copy()

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
            # Added to the seam's mapping for the faithful models (SPEC 4a); plug-ins may ignore them.
            "launch_num_tokens": self.launch_tokens,
            "prior_position_ids": (np.zeros(0, np.int32) if self.prior_position_ids is None
                                   else self.prior_position_ids.copy()),
            "block_tables_past_bsz": self.past_rows,
        }

    def with_runner_fields(self, **changes: Any) -> BatchState:
        """This validated state with runner fields (SPEC 4a) changed, checked again only by the runner rules.

        Why: the scheduler model gives every state it built its runner's buffers afterwards. The batch's own
        fields are unchanged, so a full ``validate()`` would repeat the written-block check over the whole table
        for nothing.
        """
        other = sorted(set(changes) - _RUNNER_ATTRIBUTES)
        if other:
            raise TypeError(f"not runner fields: {', '.join(other)}")
        state = replace(self, **changes)
        state._validate_runner_fields()
        return state

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
        last = dec.astype(np.int64) + this.astype(np.int64) - 1
        bad = np.flatnonzero((this > 0) & (last > INT32_MAX))
        if bad.size:
            b = int(bad[0])
            raise InputError(
                "seq_lens_decoder", f"request {b} reaches position {int(last[b])} (seq_lens_decoder {int(dec[b])} + "
                f"seq_lens_this_time {int(this[b])} - 1), past int32's {INT32_MAX}: {POSITION_RULE}", b)
        for b in np.flatnonzero(((enc > 0) & (this != enc)) | ((enc == 0) & (this > 0) & (dec == 0))).tolist():
            if enc[b] > 0 and this[b] != enc[b]:
                raise InputError(
                    "seq_lens_this_time", f"a prefilling request (seq_lens_encoder={int(enc[b])}) contributes exactly "
                    f"its prefill chunk this step, got {int(this[b])}", b)
            if enc[b] == 0 and this[b] > 0 and dec[b] == 0:
                raise InputError(
                    "seq_lens_decoder", "a decoding request (seq_lens_encoder=0, seq_lens_this_time>0) needs a "
                    "cached prefix: must be > 0", b)
        if _below_minus_one(self.block_tables):
            r, c = (int(x) for x in np.argwhere(self.block_tables < -1)[0])
            raise InputError("block_tables", f"block ids are >= 0, or -1 for unallocated; got {int(self.block_tables[r, c])}", (r, c))
        if self.padded_num_tokens < self.num_tokens:
            raise InputError("padded_num_tokens", f"must be >= the real token count {self.num_tokens}, got {self.padded_num_tokens}")
        if self.max_num_batched_tokens < self.padded_num_tokens:
            raise InputError(
                "max_num_batched_tokens",
                f"the persistent buffers must hold the padded launch of {self.padded_num_tokens} tokens, "
                f"got {self.max_num_batched_tokens}")
        self._validate_runner_fields()
        self._validate_written_blocks()
        return self

    def _validate_runner_fields(self) -> None:
        """The runner fields (SPEC 4a) describe buffers a runner of this batch could hold."""
        n, launch, padded = self.num_tokens, self.launch_tokens, self.padded_num_tokens
        if not n <= launch <= padded:
            raise InputError("launch_num_tokens", f"the runner's token count lies between the real count {n} and "
                             f"the padded launch {padded}, got {launch}")
        prior = self.prior_position_ids
        if prior is not None and prior.shape[0] > self.max_num_batched_tokens:
            raise InputError("prior_position_ids", f"holds the position buffer's {self.max_num_batched_tokens} "
                             f"entries at most, got {prior.shape[0]}")
        past = self.past_rows
        if past.shape[0]:
            if self.bsz + past.shape[0] > MAX_NUM_SEQS:
                raise InputError("block_tables_past_bsz", f"bsz {self.bsz} + {past.shape[0]} rows past it exceed "
                                 f"max_num_seqs <= {MAX_NUM_SEQS} (FDConfig.check)")
            if _below_minus_one(past):
                r, c = (int(x) for x in np.argwhere(past < -1)[0])
                raise InputError("block_tables_past_bsz", f"block ids are >= 0, or -1; got {int(past[r, c])}", (r, c))
        written = self.batch_ids_written
        if written is not None:
            if written.shape[0] != padded:
                raise InputError("batch_id_per_token", f"has one entry per launched row ({padded}), "
                                 f"got {written.shape[0]}")
            packed = self.packed_batch_ids
            bad = np.flatnonzero((written != packed) & (written != -1))
            if bad.size:
                i = int(bad[0])
                raise InputError("batch_id_per_token", f"a row holds its token's request ({int(packed[i])}) or the "
                                 f"-1 the runner fills first, got {int(written[i])}", i)

    def _validate_written_blocks(self) -> None:
        """Every real token lands on an allocated block of its own request, owned by that request alone."""
        if not self._written_blocks_hold():
            self._name_written_block_breach()

    def _name_written_block_breach(self) -> None:
        """Walk the written blocks request by request and raise for the first that breaks the rule."""
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

    def _written_blocks_hold(self) -> bool:
        """The rule of ``_validate_written_blocks`` checked on whole arrays: True when no request breaks it.

        Why: the walk (``_name_written_block_breach``) names the first breach exactly, but costs a Python step
        per written block, and every generated state passes through here; it runs only when this says False.
        """
        bs, width = self.block_size, self.max_blocks
        live = np.flatnonzero(self.seq_lens_this_time > 0)
        if live.size == 0:
            return True
        first = self.seq_lens_decoder[live].astype(np.int64) // bs
        last = (self.seq_lens_decoder[live].astype(np.int64) + self.seq_lens_this_time[live] - 1) // bs
        if int(last.max()) >= width:
            return False
        counts = last - first + 1
        blocks = self.block_tables[np.repeat(live, counts), ranges(first, counts)]
        return bool((blocks >= 0).all()) and np.unique(blocks).size == blocks.size


def _below_minus_one(table: np.ndarray) -> bool:
    """Whether a block table holds an id below -1: its minimum, not ``argwhere``, which builds an index array of a
    whole (up to 2**18-cell) table for every state generated (a tenth of generation's CPU), and is left to name
    the cell once there is one."""
    return bool(table.size) and int(table.min()) < -1


def ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """int64: ``starts[i], starts[i] + 1, ..., starts[i] + counts[i] - 1`` for every ``i``, one after another (the
    cells a row-by-row walk would visit, addressed at once)."""
    counts = np.asarray(counts, dtype=np.int64)
    within = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    return np.repeat(np.asarray(starts, dtype=np.int64), counts) + within


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


def _int_matrix(field: str, value: Any, rows: int, width: int | None = None) -> np.ndarray:
    if isinstance(value, np.ndarray):
        if value.dtype != np.int32:
            raise InputError(field, f"must be int32, got {value.dtype}")
        if value.ndim != 2 or value.shape[0] != rows or (width is not None and value.shape[1] != width):
            raise InputError(field, f"must be [{rows}, {'max_blocks' if width is None else width}], "
                             f"got shape {list(value.shape)}")
        return value.copy()
    if not isinstance(value, (list, tuple)):
        raise InputError(field, f"must be a list of rows, got {type(value).__name__}")
    if len(value) != rows:
        raise InputError(field, f"has {len(value)} rows but the batch has {rows} requests")
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
        shown = json.dumps(value) if _jsonable(value) else type(value).__name__
        shown = shown if len(shown) <= 60 else shown[:57] + "..."  # one readable line, however large the junk
        raise InputError(field, f"must be an integer, got {shown}", index)
    if not -(2**31) <= int(value) <= INT32_MAX:
        raise InputError(field, f"must fit in int32, got {int(value)}", index)


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        return False
    return True


def load_steps(path: str | Path) -> list[BatchState]:
    """The steps a state file describes: a plain state is one step; a case file
    (``{"state": {...}, "history": [...]}``, as fixtures, regressions and counterexamples are written)
    is its earlier steps, then its state, to be run in order through the same instances."""
    data = limits.read_json(path, "state file")
    if not (isinstance(data, Mapping) and isinstance(data.get("state"), Mapping)):
        return [BatchState.from_dict(data)]
    history = data.get("history", [])
    if not isinstance(history, list):
        raise InputError("history", f"must be a list of states, got {type(history).__name__}")
    if len(history) > limits.MAX_HISTORY:
        raise InputError("history", f"{len(history)} steps is over the suite's limit of {limits.MAX_HISTORY} "
                         "(validation/limits.py)")
    steps = []
    for i, step in enumerate(history):
        try:
            steps.append(BatchState.from_dict(step))
        except InputError as exc:
            raise InputError(f"history[{i}].{exc.field}", exc.rule, exc.index) from None
    return [*steps, BatchState.from_dict(data["state"])]
