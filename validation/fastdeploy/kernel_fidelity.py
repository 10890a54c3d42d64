"""The kernel half of ``fidelity``: each checkout's compiled ops against the suite's CUDA models.

For every op a checkout declares, the same op-level inputs go to FastDeploy's own kernel (compiled
from the checkout, launched by its host wrapper: ``compiled_ops``) and to the suite's model of it
(the kernels of ``validation/impls/cuda_kernels.cu``, launched as ``cuda_paths`` launches them), and
every element of every buffer is compared bit for bit, writes past a buffer and launch failures
included. The inputs are the committed corpus's states (as the runner hands them to the op: lengths,
the persistent buffer with its prior contents, the block table, the batch ids) and seeded op-level
draws that go where a server does not (tight buffers, chunked-prefill rows, batch id -1, bsz over
1024). The padding-offset op is compared with what the suite assumes it writes (``BatchState``'s
packing, ``cu_seqlens_q``).

One documented exception is counted, not compared: where a token's block-table index falls outside
the table (batch id -1 reads before it), FastDeploy's fused kernel reads whatever memory is there
(here: the guard's sentinel), while the model leaves the slot unwritten and reports a hazard. The
row counts such tokens; the kernel must have read outside (its slot is the sentinel's) and the model
must have reported the same number of them.

    python -m validation.fastdeploy.kernel_fidelity ../shared/fastdeploy/* --fuzz 300
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import fixtures
from validation import atomic_file
from validation.cross_backend import read_corpus
from validation.errors import InputError, MissingDependency
from validation.fastdeploy.compiled_ops import SENTINELS, CompiledOp, compile_checkout_ops
from validation.fastdeploy.kernel_source import PADDING_OP, checkout_commit
from validation.impls import cuda_paths
from validation.impls.faults import KernelFault, check_launch
from validation.impls.paddle_paths import prior_contents
from validation.options import output_file
from validation.state import BatchState

CORPUS = fixtures.ROOT / "corpus" / "states.jsonl.gz"
BACKEND = "cuda (compiled)"
# The suite's model of each op, per snapshot (the shared snapshots' README names each commit's path);
# a checkout outside this table is compared with every model of its op name.
POSITION_MODELS = {"get_position_ids_and_mask_encoder_batch": ("positions_v1", "positions_v3"),
                   "get_position_ids": ("positions_renamed",),
                   "get_position_ids_and_slot_mapping": ("fused_positions_and_slots",),
                   PADDING_OP: ("packing",)}
SNAPSHOT_MODELS = {"d2d633b05c2c": "positions_v1", "2d8338f9e4e6": "positions_v1", "97cda572f293": "positions_v1",
                   "6248358f4a32": "positions_v3"}


@dataclass
class Row:
    """One table row: a checkout's op against one model over every state."""

    commit: str
    op: str
    model: str
    origin: str
    states: int = 0
    identical: int = 0
    exceptions: int = 0  # tokens whose block-table read is undefined in FastDeploy (see the docstring)
    first_difference: str = ""
    backend: str = BACKEND

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Case:
    """One op-level input: where it came from, and the arrays."""

    label: str
    lens: dict[str, np.ndarray]  # seq_lens_encoder/decoder/this_time, int32
    buffer_size: int
    prior: np.ndarray  # the position buffer's contents before the step (int32)
    block_tables: np.ndarray
    batch_id: np.ndarray
    block_size: int
    cpu_token_num: int


def models_for(commit: str, op: str) -> tuple[str, ...]:
    if op == "get_position_ids_and_mask_encoder_batch" and commit[:12] in SNAPSHOT_MODELS:
        return (SNAPSHOT_MODELS[commit[:12]],)
    return POSITION_MODELS[op]


# ---- inputs -------------------------------------------------------------------------------------

def corpus_cases(path: Path, limit: int | None = None) -> Iterator[Case]:
    for index, state in enumerate(read_corpus(path)):
        if limit is not None and index >= limit:
            return
        yield state_case(state, f"corpus #{index}")


def state_case(state: BatchState, label: str) -> Case:
    inputs = state.step_inputs()
    lens = {k: np.asarray(inputs[k], dtype=np.int32) for k in ("seq_lens_encoder", "seq_lens_decoder", "seq_lens_this_time")}
    return Case(label, lens, state.max_num_batched_tokens, prior_contents(inputs, state.max_num_batched_tokens),
                np.asarray(state.block_tables, dtype=np.int32), state.batch_id_per_token.astype(np.int32),
                state.block_size, state.launch_tokens)


def fuzz_cases(count: int, seed: int = 0) -> Iterator[Case]:
    """Seeded op-level draws: decode, prefill, chunked-prefill and idle rows, tight buffers, stale prior
    contents, batch id -1 on some tokens, a few launches over 1024 threads."""
    rng = np.random.default_rng(seed)
    for index in range(count):
        bsz = int(rng.integers(1000, 1100)) if index % 25 == 24 else int(rng.integers(1, 65))
        kind = rng.integers(0, 4, size=bsz)  # 0 decode, 1 prefill, 2 chunked prefill, 3 idle
        this = np.where(kind == 0, rng.integers(0, 4, size=bsz), rng.integers(1, 300, size=bsz))
        this = np.where(kind == 3, 0, this)
        enc = np.where((kind == 1) | (kind == 2), this, 0)
        dec = np.where(kind == 1, 0, rng.integers(0, 5000, size=bsz))
        dec = np.where(kind == 3, 0, dec)
        bs = int(rng.choice([1, 16, 48, 64, 100, 256]))
        width = int(((dec + this) // bs).max()) + 1 + int(rng.integers(0, 3))
        tables = rng.integers(0, 1 << 20, size=(bsz, width)).astype(np.int32)
        n = int(this.sum())
        batch = np.repeat(np.arange(bsz, dtype=np.int32), this)
        if n and rng.random() < 0.2:
            batch[rng.integers(0, n, size=max(1, n // 50))] = -1
        pad = int(rng.integers(0, 40))
        batch = np.concatenate([batch, np.full(pad, -1, np.int32)])
        size = max(1, n + int(rng.integers(-min(n, 30), 60)))  # sometimes smaller than what v1 writes
        prior = rng.integers(-(1 << 20), 1 << 20, size=size).astype(np.int32)
        lens = {"seq_lens_encoder": enc.astype(np.int32), "seq_lens_decoder": dec.astype(np.int32),
                "seq_lens_this_time": this.astype(np.int32)}
        yield Case(f"fuzz seed {seed} #{index}", lens, size, prior, tables, batch, bs,
                   max(0, n + int(rng.integers(-2, 5))))


# ---- one comparison -------------------------------------------------------------------------------

Outcome = tuple[str | None, int]  # (first difference or None, exception count)


def op_arrays(op: CompiledOp, case: Case) -> dict[str, Any]:
    """The op's inputs for one case, as the runner hands them over: the lengths, the persistent buffers
    whole (prior contents for the position buffer, zeros for the int64 ones), the table, the batch ids."""
    arrays: dict[str, Any] = dict(case.lens)
    if op.name == PADDING_OP:
        this = case.lens["seq_lens_this_time"]
        width = int(this.max(initial=0)) + 3
        arrays = {"input_ids": np.arange(this.shape[0] * width, dtype=np.int64).reshape(-1, width) + 1000,
                  "seq_len": this, "cpu_token_num": case.cpu_token_num}
        if "seq_lens_decoder" in op.source.inputs:  # the #7727 form, which its pre-process passes
            arrays["seq_lens_decoder"] = case.lens["seq_lens_decoder"]
    elif op.name == "get_position_ids_and_slot_mapping":
        arrays.update(batch_id_per_token=case.batch_id, block_tables=case.block_tables,
                      position_ids=np.zeros(case.buffer_size, np.int64),
                      slot_mapping=np.zeros(case.buffer_size, np.int64), block_size=case.block_size)
    else:
        arrays["position_ids"] = case.prior.copy()
        if "mask_encoder_batch" in op.source.inputs:
            arrays["mask_encoder_batch"] = np.zeros(case.buffer_size, np.int32)
    return arrays


def _run_compiled(op: CompiledOp, **arrays: Any) -> tuple[dict[str, np.ndarray] | None, Any, str | None]:
    try:
        out = op(**arrays)
        return out, out.overruns, None
    except KernelFault as exc:
        return None, None, str(exc)


def _spill_text(count: int, highest: int) -> str:
    return f"writes past the buffer up to index {highest}" if count else "no write past the buffer"


def _overrun_text(overrun: Any) -> str:
    if overrun is None:
        return "no write past the buffer"
    if overrun.indices.min() < 0:
        return f"writes before the buffer ({overrun})"
    return f"writes past the buffer up to index {int(overrun.indices.max())}"


def _launches(model: str, bsz: int, fault: str | None) -> Outcome | None:
    """None when both sides launched; else the outcome: the model's 1024-thread rule and the driver's
    refusal of the kernel's launch must agree."""
    try:
        check_launch(model, bsz)
    except KernelFault as exc:
        return (None if fault else f"the model faults ({exc}), the kernel ran"), 0
    if fault:
        return f"the kernel faults ({fault}), the model ran", 0
    return None


def compare_positions(op: CompiledOp, model: str, case: Case) -> Outcome:
    """A position op (any version) against ``positions_v1``/``_v3``/``_renamed`` on the same buffer."""
    cp = cuda_paths.cupy()
    got, overruns, fault = _run_compiled(op, **op_arrays(op, case))
    bsz = case.lens["seq_lens_this_time"].shape[0]
    if (launched := _launches(model, bsz, fault)) is not None:
        return launched
    d = {k: cp.asarray(v) for k, v in case.lens.items()}
    buf, spill = cp.asarray(case.prior.copy()), cp.zeros(2, dtype=np.int32)
    cuda_paths._module().get_function(model)(
        (1,), (bsz,), (d["seq_lens_encoder"], d["seq_lens_decoder"], d["seq_lens_this_time"], buf,
                       np.int32(buf.shape[0]), spill))
    want, (count, highest) = buf.get(), (int(x) for x in spill.get())
    diff = _first_diff("position_ids", got["position_ids_out"], want)
    if diff:
        return diff, 0
    kernel, modelled = _overrun_text(overruns.get("position_ids")), _spill_text(count, highest)
    if kernel != modelled:
        return f"position_ids: kernel {kernel}, model {modelled}", 0
    return None, 0


def compare_fused(op: CompiledOp, model: str, case: Case) -> Outcome:
    """The fused op against ``fused_positions_and_slots`` (int64 buffers, batch ids read per token)."""
    cp = cuda_paths.cupy()
    size = case.buffer_size
    got, overruns, fault = _run_compiled(op, **op_arrays(op, case))
    bsz, width = case.block_tables.shape
    if (launched := _launches(model, bsz, fault)) is not None:
        return launched
    this, dec = case.lens["seq_lens_this_time"], case.lens["seq_lens_decoder"]
    pos_buf, slot_buf = cp.zeros(size, np.int64), cp.zeros(size, np.int64)
    spill, fault_flag = cp.zeros(2, np.int32), cp.asarray(np.array([0, np.iinfo(np.int32).max], np.int32))
    before = cp.asarray(np.array([0, np.iinfo(np.int32).max], np.int32))
    cuda_paths._module().get_function(model)(
        (1,), (bsz,), (cp.asarray(dec), cp.asarray(this), cp.asarray(case.batch_id), cp.asarray(case.block_tables),
                       np.int32(bsz), np.int32(width), np.int32(case.block_size), pos_buf, slot_buf, np.int32(size),
                       np.int32(0), np.int64(-1), spill, fault_flag, before))
    diff = _first_diff("position_ids", got["position_ids_out"], pos_buf.get())
    if diff:
        return diff, 0
    # Tokens whose table index is outside the table: undefined in FastDeploy, a hazard in the model.
    n = min(int(this.sum()), size)
    pos = np.concatenate([dec[b] + np.arange(this[b], dtype=np.int64) for b in range(bsz)])[:n] if n else np.zeros(0)
    flat = case.batch_id[:n].astype(np.int64) * width + pos // case.block_size
    outside = (flat < 0) | (flat >= bsz * width)
    kernel_slots, model_slots = got["slot_mapping_out"].copy(), slot_buf.get()
    sentinel = int(SENTINELS[np.dtype(np.int32)])
    read_sentinel = kernel_slots[:n][outside] == sentinel * case.block_size + pos[outside] % case.block_size
    if not read_sentinel.all():
        return f"slot_mapping: {int((~read_sentinel).sum())} token(s) outside the table did not read outside it", 0
    modelled = int(before.get()[0]) + int(fault_flag.get()[0])
    if outside.any() != bool(modelled) or (int(before.get()[0]) and int(before.get()[0]) != int((flat < 0).sum())):
        return f"slot_mapping: {int(outside.sum())} token(s) read outside the table, the model reports {modelled}", 0
    kernel_slots[:n][outside] = model_slots[:n][outside]
    diff = _first_diff("slot_mapping", kernel_slots, model_slots)
    if diff:
        return diff, 0
    modelled = _spill_text(*(int(x) for x in spill.get()))
    for name in ("position_ids", "slot_mapping"):
        if _overrun_text(overruns.get(name)) != modelled:
            return f"{name}: kernel {_overrun_text(overruns.get(name))}, model {modelled}", 0
    return None, int(outside.sum())


def compare_padding(op: CompiledOp, model: str, case: Case) -> Outcome:
    """``get_padding_offset`` against the packing the suite assumes (``BatchState.packed_batch_ids``,
    ``cu_seqlens_q``): batch id of each real token, -1 after it up to ``cpu_token_num``."""
    arrays = op_arrays(op, case)
    this, input_ids = case.lens["seq_lens_this_time"], arrays["input_ids"]
    bsz = this.shape[0]
    got, overruns, fault = _run_compiled(op, **arrays)
    if fault:
        return f"the kernel faults ({fault})", 0
    n, cpu = int(this.sum()), case.cpu_token_num
    packing = np.repeat(np.arange(bsz, dtype=np.int32), this)
    want_ids = np.full(cpu, -1, np.int32)
    want_ids[: min(n, cpu)] = packing[:cpu]
    tokens = np.concatenate([input_ids[b, : this[b]] for b in range(bsz)]) if bsz else np.zeros(0, np.int64)
    want_x = np.full(cpu, 2, np.int64)
    want_x[: min(n, cpu)] = tokens[:cpu]
    cu_q = np.concatenate([[0], np.cumsum(this.astype(np.int64))]).astype(np.int32)
    k_lens = this + case.lens["seq_lens_decoder"] if "seq_lens_decoder" in arrays else this
    cu_k = np.concatenate([[0], np.cumsum(k_lens.astype(np.int64))]).astype(np.int32)
    if cpu == 0:
        return None, 0
    for name, want in (("batch_id_per_token", want_ids), ("x_remove_padding", want_x), ("cu_seqlens_q", cu_q),
                       ("cu_seqlens_k", cu_k)):
        diff = _first_diff(name, got[name], want)
        if diff:
            return diff, 0
    if n > cpu and not overruns:
        return f"batch_id_per_token: {n} tokens into {cpu} rows, and the kernel wrote nothing past them", 0
    if n <= cpu and overruns:
        return f"writes outside a tensor: {', '.join(f'{k} {v}' for k, v in overruns.items())}", 0
    return None, 0


COMPARE: dict[str, Callable[[CompiledOp, str, Case], Outcome]] = {
    "get_position_ids_and_mask_encoder_batch": compare_positions, "get_position_ids": compare_positions,
    "get_position_ids_and_slot_mapping": compare_fused, PADDING_OP: compare_padding}


def _first_diff(name: str, got: np.ndarray, want: np.ndarray) -> str | None:
    if got.dtype != want.dtype or got.shape != want.shape:
        return f"{name}: kernel {got.dtype}{list(got.shape)}, model {want.dtype}{list(want.shape)}"
    bad = np.flatnonzero(got != want)
    if not bad.size:
        return None
    i = int(bad[0])
    return f"{name}[{i}]: kernel {got[i]}, model {want[i]} ({bad.size} element(s) differ)"


# ---- the table ----------------------------------------------------------------------------------

def fidelity_rows(roots: list[Path], corpus: Path = CORPUS, fuzz: int = 200, seed: int = 0,
                  corpus_limit: int | None = None) -> list[Row]:
    """One row per (checkout, op, model): states compared, identical, exceptions, first difference."""
    cases = list(corpus_cases(corpus, corpus_limit)) + list(fuzz_cases(fuzz, seed))
    rows = []
    for root in roots:
        commit = checkout_commit(Path(root))
        for name, op in compile_checkout_ops(Path(root)).items():
            for model in models_for(commit, name):
                row = Row(commit, name, model, op.origin)
                for case in cases:
                    diff, exceptions = COMPARE[name](op, model, case)
                    row.states += 1
                    row.exceptions += exceptions
                    if diff is None:
                        row.identical += 1
                    elif not row.first_difference:
                        row.first_difference = f"{case.label}: {diff}"
                rows.append(row)
    return rows


def render(rows: list[Row]) -> str:
    head = ("commit", "op", "backend", "model", "states", "identical", "exceptions", "first difference")
    body = [(r.commit, r.op, r.backend, r.model, str(r.states), str(r.identical), str(r.exceptions),
             r.first_difference or "-") for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in (head, *body))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m validation.fastdeploy.kernel_fidelity", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("roots", nargs="+", type=Path, help="FastDeploy checkouts (or the shared snapshot folders)")
    p.add_argument("--corpus", type=Path, default=CORPUS)
    p.add_argument("--fuzz", type=int, default=200, help="seeded op-level draws per op (default 200)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=output_file, help="also write the rows as JSON lines")
    args = p.parse_args(argv)
    try:
        rows = fidelity_rows(args.roots, args.corpus, args.fuzz, args.seed)
    except (InputError, MissingDependency) as exc:
        print(f"kernel_fidelity: {exc}", file=sys.stderr)
        return 2
    print(render(rows))
    if args.json:
        import json  # noqa: PLC0415

        atomic_file.write_text(args.json, "".join(json.dumps(r.to_dict()) + "\n" for r in rows))
    return 0 if all(r.identical == r.states for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
