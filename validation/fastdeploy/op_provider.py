"""The custom ops a checkout's Python calls, provided by its compiled kernels or, without CUDA, by the suite's models.

FastDeploy's slot-mapping lines call ``get_position_ids_and_mask_encoder_batch`` (legacy to #7727, in two
kernel versions), ``get_position_ids`` (#7674 on) and the fused ``get_position_ids_and_slot_mapping`` (#7960).
An ``OpProvider`` gives the lines those names. Where CUDA is available and the fd-kernels half's
``validation.fastdeploy.compiled_ops`` compiles the checkout's own ``.cu`` files, each op is that kernel
(Paddle tensor -> numpy -> kernel -> Paddle). Otherwise the suite's Paddle model of the op stands in, picked
by the kernel's own text: its ``__global__`` functions, comments and spacing removed, are matched against the
versions the suite models. Every op's origin is a line of ``describe()``, and reports print it: a substitution
is never silent, and a kernel the suite does not model is named as such.

Ops write in place, as the kernels do. The runner passes them a slice of a persistent buffer; a kernel
writes through the slice's pointer, so writes past the slice land in the buffer. The provider therefore
writes into the registered persistent buffer the slice starts at (same data pointer), as the GPU would.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from validation.errors import MissingDependency
from validation.fastdeploy.checkout import OPS_DIR, Checkout
from validation.impls import paddle_ops
from validation.impls.paddle_runtime import paddle

POSITION_OPS = ("get_position_ids_and_mask_encoder_batch", "get_position_ids")
FUSED_OP = paddle_ops.FUSED_OP
# sha256[:16] of each modelled kernel's ``__global__`` text (comments and whitespace removed), read from the
# snapshots in ../shared/fastdeploy: which model reproduces which kernel version.
KNOWN_KERNELS: dict[str, str] = {
    "8888552a8927e754": "positions_v1",  # get_position_ids_and_mask_encoder_batch.cu@d2d633b05c2c (with mask)
    "4867ea146c5b70d5": "positions_v1",  # @2d8338f9e4e6, @97cda572f293 (mask dropped)
    "50d1e19d4d235a07": "positions_v3",  # @6248358f4a32 (#7727: chunked prefill, prefix cache)
    "cbd188589b14d002": "positions_renamed",  # get_position_ids.cu@ad431c77b312 .. 41677b9a677c
    "35115d8bd5f622c9": "fused",  # get_position_ids_and_slot_mapping.cu@7198b5883a0e, @41677b9a677c
}
MODEL_OPS: dict[str, Callable[..., None]] = {
    "positions_v1": paddle_ops.positions_v1,
    "positions_v3": paddle_ops.positions_v3,
    "positions_renamed": paddle_ops.positions_renamed,
}
# What stands in when the kernel file is absent or unmodelled: the op's newest modelled version of that name.
DEFAULT_MODEL = {"get_position_ids_and_mask_encoder_batch": "positions_v1", "get_position_ids": "positions_renamed",
                 FUSED_OP: "fused"}

_COMMENTS = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)
_GLOBAL = re.compile(r"__global__[^{]*\{")


@functools.lru_cache(maxsize=256)
def kernel_fingerprint(cu_path: Path) -> str:
    """sha256[:16] of the file's ``__global__`` functions, comments and whitespace removed."""
    text = _COMMENTS.sub("", cu_path.read_text(encoding="utf-8", errors="replace"))
    bodies = []
    for match in _GLOBAL.finditer(text):
        depth, i = 1, match.end()
        while depth and i < len(text):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        bodies.append(text[match.start():i])
    return hashlib.sha256("".join("".join(bodies).split()).encode()).hexdigest()[:16]


@dataclass
class OpProvider:
    """The ops one checkout's lines call, the persistent buffers they write through, and what ran."""

    checkout: Checkout
    hazards: list[str] = field(default_factory=list)
    origins: dict[str, str] = field(default_factory=dict)
    _buffers: list[Any] = field(default_factory=list)
    _compiled: dict[str, Any] | None = None
    _no_kernel_reason: str = ""
    _models: dict[str, tuple[str, str]] = field(default_factory=dict)

    def register(self, buffer: Any) -> Any:
        """A persistent buffer the ops may be handed a slice of."""
        self._buffers.append(buffer)
        return buffer

    def forget_buffers(self) -> None:
        """The engine reallocated its buffers (another size): the old ones are gone."""
        self._buffers.clear()

    def base(self, tensor: Any) -> Any:
        """The registered buffer ``tensor`` is a leading slice of (what the kernel writes through), else itself."""
        ptr = tensor.data_ptr()
        for buffer in self._buffers:
            if buffer.data_ptr() == ptr and buffer.dtype == tensor.dtype:
                return buffer
        return tensor

    def namespace(self) -> dict[str, Callable[..., None]]:
        """The op names the checkout's lines may call, each bound to what runs it here."""
        return {name: self._op(name) for name in (*POSITION_OPS, FUSED_OP)}

    def describe(self) -> list[str]:
        """One line per op that ran: ``NAME: kernel compiled from ...`` or ``NAME: kernel: model ...``."""
        return [f"{name}: {origin}" for name, origin in sorted(self.origins.items())]

    # ---- one op --------------------------------------------------------------------------------

    def origin(self, name: str) -> str:
        """What runs op ``name`` here: ``kernel compiled from ...`` or ``kernel: model ...`` with why."""
        compiled = self._compiled_op(name)
        if compiled is not None:
            return str(compiled.origin)
        model, why = self._model_for(name)
        return f"kernel: model {model}{why}"

    def _op(self, name: str) -> Callable[..., None]:
        def run(*args: Any) -> None:
            self.origins[name] = self.origin(name)
            compiled = self._compiled_op(name)
            if compiled is not None:
                overruns = _run_compiled(compiled, self._op_signature(name),
                                         [self.base(a) if _is_tensor(a) else a for a in args])
                self.hazards.extend(f"{name} (compiled) wrote outside {tensor}: {what}" for tensor, what in overruns.items())
                return
            self._run_model(name, self._model_for(name)[0], args)
        run.__name__ = name
        return run

    def _compiled_op(self, name: str) -> Any:
        if self._compiled is None:
            self._compiled, self._no_kernel_reason = compiled_ops_for(self.checkout)
        return self._compiled.get(name)

    def _op_signature(self, name: str) -> list[str]:
        cu = self.checkout.op_source(name)
        return op_parameters(cu) if cu is not None else []

    def _model_for(self, name: str) -> tuple[str, str]:
        if name not in self._models:
            self._models[name] = self._pick_model(name)
        return self._models[name]

    def _pick_model(self, name: str) -> tuple[str, str]:
        cu = self.checkout.op_source(name)
        if cu is None:
            return DEFAULT_MODEL[name], f" (the checkout has no {OPS_DIR}/{name}.cu: not its kernel)"
        known = KNOWN_KERNELS.get(kernel_fingerprint(cu))
        relpath = cu.relative_to(self.checkout.root)
        if known is None:
            return DEFAULT_MODEL[name], (f" (NOT the checkout's kernel: {relpath} differs from every version the suite "
                                         "models; compile it on a GPU to run it)")
        return known, f" of {relpath}@{self.checkout.commit} ({self._no_kernel_reason})"

    def _run_model(self, name: str, model: str, args: tuple[Any, ...]) -> None:
        if name == FUSED_OP:
            enc, dec, this, bid, tables, positions, slots, block_size = args
            paddle_ops.fused_positions_and_slots(enc, dec, this, bid, tables, int(block_size), self.base(positions),
                                                 self.base(slots), self.hazards)
            return
        enc, dec, this, positions, *mask = args
        MODEL_OPS[model](enc, dec, this, self.base(positions), self.hazards)
        if mask:  # the legacy op's second output: 1 on encoder rows, 0 on decoder rows (v1 kernel, lines 44-54)
            write_mask_v1(enc, dec, this, self.base(mask[0]))


def write_mask_v1(enc: Any, dec: Any, this: Any, mask: Any) -> None:
    """The v1 kernel's ``mask_encoder_batch``: its ``enc`` rows 1, then (``dec > 0``) its ``this`` rows 0 (writes past
    the mask are dropped: no consumer reads the mask; the position buffer's overruns are reported by the model)."""
    e, d, t = (np.asarray(x.numpy(), dtype=np.int64) for x in (enc, dec, this))
    decode = np.where(d > 0, t, 0)
    offset = np.cumsum(e + decode) - (e + decode)
    counts = np.stack([e, decode], axis=1).reshape(-1)
    starts = np.stack([offset, offset + e], axis=1).reshape(-1)
    values = np.repeat(np.tile([1, 0], e.shape[0]), counts)
    rows = np.repeat(starts, counts) + (np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts))
    keep = rows < int(np.prod(mask.shape))
    if keep.any():
        pd = paddle()
        flat = mask if len(mask.shape) == 1 else mask.reshape([-1])
        flat[pd.to_tensor(rows[keep])] = pd.to_tensor(values[keep]).astype(flat.dtype)
        if flat is not mask:
            pd.assign(flat.reshape(mask.shape), mask)


_INPUTS = re.compile(r"\.Inputs\(\s*\{([^}]*)\}")
_ATTRS = re.compile(r"\.Attrs\(\s*\{([^}]*)\}")


@functools.lru_cache(maxsize=256)
def op_parameters(cu_path: Path) -> list[str]:
    """The op's positional parameters as its ``PD_BUILD_OP`` declares them: inputs, then attributes."""
    text = _COMMENTS.sub("", cu_path.read_text(encoding="utf-8", errors="replace"))
    names: list[str] = []
    for pattern in (_INPUTS, _ATTRS):
        match = pattern.search(text)
        if match:
            names.extend(n.split(":")[0].strip() for n in re.findall(r'"([^"]+)"', match.group(1)))
    return names


def _is_tensor(value: Any) -> bool:
    return hasattr(value, "data_ptr") and hasattr(value, "numpy")


def _run_compiled(op: Any, params: list[str], args: list[Any]) -> dict[str, Any]:
    """Run a compiled kernel on the arguments' host copies, write its in-place outputs back, and return what it
    wrote outside its tensors (the compiled op's guards: ``overruns``)."""
    pd = paddle()
    if len(params) != len(args):
        params = params[: len(args)]
    arrays = {p: (np.asarray(a.numpy()) if _is_tensor(a) else a) for p, a in zip(params, args)}
    outputs = op(**arrays)
    by_name = dict(zip(params, args))
    for key, value in outputs.items():
        target = by_name.get(key) if key in by_name else by_name.get(key.removesuffix("_out"))
        if target is not None and _is_tensor(target):
            pd.assign(pd.to_tensor(np.asarray(value).reshape(target.shape)).astype(target.dtype), target)
    return dict(getattr(outputs, "overruns", {}))


@functools.lru_cache(maxsize=32)
def compiled_ops_for(checkout: Checkout) -> tuple[dict[str, Any], str]:
    """The checkout's compiled kernels and "", or {} and why not (CUDA/CuPy or the compiler half absent: the
    models then stand in, named). A kernel that does not compile is the compiler's ``InputError``: exit 2."""
    try:
        from validation.fastdeploy import compiled_ops  # noqa: PLC0415 - the GPU half, optional
    except ImportError:
        return {}, "no kernel compiler in this install"
    try:
        return compiled_ops.compile_checkout_ops(checkout.root), ""
    except MissingDependency as exc:
        return {}, f"not compiled here: {str(exc).split(',')[0]}"
