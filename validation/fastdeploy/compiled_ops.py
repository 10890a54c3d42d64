"""A FastDeploy checkout's custom ops, compiled from its own ``.cu`` files and run on the GPU.

``compile_checkout_ops(root)`` reads each slot-mapping op the checkout declares (``kernel_source``),
compiles its kernels with CuPy (NVRTC) and returns one ``CompiledOp`` per op, keyed by the name
FastDeploy's Python calls it by. Calling a ``CompiledOp`` with numpy arrays named as the op's inputs
and attributes (the names of its ``PD_BUILD_STATIC_OP`` declaration) executes the op's host wrapper
(``host_wrapper``): the wrapper's own launch shape, allocations and arguments, the checkout's own
kernel. It returns the op's outputs by their declared names (an in-place output holds the input's
buffer after the kernel ran).

Every tensor the kernel can reach lies between two guard regions filled with a sentinel: a write
before or past a tensor (FastDeploy's position op writing past ``position_ids[:n]`` into the rest of
the runner's buffer, say) lands there instead of in someone else's memory, and is reported in the
result's ``overruns`` (index relative to the tensor, value written) rather than lost. A read outside
a tensor reads the sentinel. A launch the driver refuses (more than 1024 threads in a block) raises
``KernelFault``, as the suite's models do.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from validation.errors import InputError, MissingDependency
from validation.fastdeploy import host_wrapper as hw
from validation.fastdeploy.kernel_source import OP_NAMES, OpSource, find_op_files, first_compiler_error, read_op
from validation.impls.faults import KernelFault

GUARD_MIN, GUARD_MAX = 4096, 1 << 23
# What the guard regions hold; a kernel writing exactly these values past a tensor goes unseen.
SENTINELS = {np.dtype(np.int32): np.int32(-0x21524111), np.dtype(np.int64): np.int64(-0x2152411021524111)}


class NoGpu(MissingDependency):
    """CuPy is installed but no CUDA device can run a kernel here."""

    def __init__(self, reason: str) -> None:
        RuntimeError.__init__(self, f"compiling FastDeploy's kernels needs a CUDA GPU: {reason}")


@functools.cache
def cupy() -> Any:
    """CuPy with a usable device, or ``MissingDependency`` saying which is missing."""
    try:
        import cupy as cp  # noqa: PLC0415 - optional, GPU only
    except ImportError:
        raise MissingDependency("cupy", "gpu", "compiling FastDeploy's kernels") from None
    try:
        if cp.cuda.runtime.getDeviceCount() < 1:
            raise NoGpu("no CUDA device")
    except NoGpu:
        raise
    except Exception as exc:  # noqa: BLE001 - any driver/runtime failure means: no GPU here
        raise NoGpu(f"{type(exc).__name__}: {exc}") from None
    return cp


@dataclass(frozen=True)
class Overrun:
    """Elements a kernel wrote outside a tensor: indices relative to its first element, and the values."""

    indices: np.ndarray
    values: np.ndarray

    def __str__(self) -> str:
        return f"{self.indices.size} element(s) at {self.indices.min()}..{self.indices.max()}"


class OpOutputs(dict):
    """The op's outputs by declared name; ``overruns``: tensor name -> what was written outside it."""

    def __init__(self, outputs: dict[str, np.ndarray], overruns: dict[str, Overrun]) -> None:
        super().__init__(outputs)
        self.overruns = overruns


@dataclass
class _Guarded:
    tensor: hw.Tensor
    base: Any  # the device buffer: guard, tensor, guard
    guard: int

    def overrun(self) -> Overrun | None:
        """What the kernel wrote into the guards (read on the device; only the written elements come back)."""
        cp = cupy()
        n = int(np.prod(self.tensor.shape))
        written = self.base != SENTINELS[np.dtype(self.tensor.dtype)]
        written[self.guard:self.guard + n] = False
        at = cp.flatnonzero(written)
        if not at.size:
            return None
        return Overrun(at.get() - self.guard, self.base[at].get())


@dataclass
class _CupyDevice:
    """``host_wrapper.Device`` on CuPy: guarded allocations and launches of the compiled module."""

    op: CompiledOp
    guard: int
    buffers: list[_Guarded] = field(default_factory=list)

    def put(self, name: str, array: np.ndarray) -> hw.Tensor:
        tensor = self._alloc(name, array.shape, array.dtype)
        tensor.storage.set(np.ascontiguousarray(array).reshape(-1))
        return tensor

    def alloc(self, name: str, shape: tuple[int, ...], dtype: Any, fill: int | None) -> hw.Tensor:
        tensor = self._alloc(name, shape, dtype)
        if fill is not None:
            tensor.storage.fill(fill)
        return tensor

    def _alloc(self, name: str, shape: tuple[int, ...], dtype: Any) -> hw.Tensor:
        cp = cupy()
        dtype = np.dtype(dtype)
        if dtype not in SENTINELS:
            raise InputError(name, f"is {dtype}; the compiled ops take int32 and int64 tensors")
        n = int(np.prod(shape))
        base = cp.full(n + 2 * self.guard, SENTINELS[dtype], dtype=dtype)
        tensor = hw.Tensor(name, tuple(int(s) for s in shape), dtype, base[self.guard:self.guard + n])
        self.buffers.append(_Guarded(tensor, base, self.guard))
        return tensor

    def launch(self, kernel: str, grid: tuple[int, ...], block: tuple[int, ...], smem: int, args: list[Any]) -> None:
        cp = cupy()
        params = self.op.source.kernels[kernel].params
        if len(params) != len(args):
            raise InputError(self.op.source.file.as_posix(), f"{kernel} takes {len(params)} arguments, "
                             f"the wrapper passes {len(args)}")
        values = [_kernel_arg(ctype, value) for (ctype, _), value in zip(params, args)]
        try:
            self.op.module().get_function(kernel)(grid, block, tuple(values), shared_mem=smem)
        except cp.cuda.driver.CUDADriverError as exc:
            raise KernelFault(f"{self.op.name}: {kernel}<<<{_shape(grid)}, {_shape(block)}>>> does not launch: "
                              f"{exc}") from None


def _shape(dims: tuple[int, ...]) -> str:
    return ", ".join(map(str, dims)) if len(dims) > 1 else str(dims[0])


def _kernel_arg(ctype: str, value: Any) -> Any:
    if isinstance(value, hw.Ptr):
        return value.tensor.storage
    if value is None:
        return np.uintp(0)  # nullptr
    if isinstance(value, int):
        base = " ".join(w for w in ctype.replace("*", " ").split() if w not in ("const", "__restrict__"))
        return np.dtype(hw.CTYPES.get(base, np.int32)).type(value)
    raise TypeError(f"cannot pass {value!r} to a kernel parameter of type {ctype}")


@dataclass
class CompiledOp:
    """One custom op of one checkout, compiled; call it with numpy arrays named as the op declares."""

    source: OpSource
    module: Callable[[], Any]

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def origin(self) -> str:
        return self.source.origin

    @property
    def parameters(self) -> tuple[str, ...]:
        return self.source.inputs + tuple(a for a, _ in self.source.attrs)

    def __call__(self, **arrays: Any) -> OpOutputs:
        """Run the op once: copy in, execute the host wrapper, synchronise, copy out, read the guards."""
        device, run = self.prepare(**arrays)
        returned = run()
        cupy().cuda.get_current_stream().synchronize()
        return self._outputs(device, returned)

    def prepare(self, **arrays: Any) -> tuple[_CupyDevice, Callable[[], Any]]:
        """The inputs on the device, and the op's host wrapper as a call that launches without copies or
        synchronisation (for the bench)."""
        unknown = sorted(set(arrays) - set(self.parameters))
        if unknown:
            raise InputError(unknown[0], f"{self.name} takes no such input (it takes: {', '.join(self.parameters)})")
        missing = [n for n in self.parameters if n not in arrays and n not in self.source.optional]
        if missing:
            raise InputError(missing[0], f"{self.name} needs it and it was not given")
        attrs = dict(self.source.attrs)
        tensors = {n: np.asarray(v) for n, v in arrays.items() if n not in attrs and v is not None}
        device = _CupyDevice(self, _guard(a for n, a in tensors.items() if n not in self.source.inplace))
        args: dict[str, Any] = {n: None for n in self.source.optional}
        args.update({n: device.put(n, a) for n, a in tensors.items()})
        args.update({n: int(v) for n, v in arrays.items() if n in attrs})
        wrapper = hw.Wrapper(self.source.file, self.source.wrapper, self.source.wrapper_params,
                             self.source.wrapper_body.text, self.source.wrapper_body.line, self.source.macros)
        return device, lambda: wrapper.run(args, device)

    def _outputs(self, device: _CupyDevice, returned: Any) -> OpOutputs:
        by_name = {b.tensor.name: b.tensor for b in device.buffers}
        out: dict[str, np.ndarray] = {}
        for inp, name in self.source.inplace.items():
            if inp in by_name:
                out[name] = by_name[inp].storage.get().reshape(by_name[inp].shape)
        rest = [n for n in self.source.outputs if n not in out]
        if isinstance(returned, list):
            for name, tensor in zip(rest, returned):
                out[name] = tensor.storage.get().reshape(tensor.shape)
        overruns = {b.tensor.name: o for b in device.buffers if (o := b.overrun()) is not None}
        return OpOutputs(out, overruns)


def _guard(arrays: Iterable[np.ndarray]) -> int:
    """Guard elements on each side of every tensor, from the op's read-only inputs: more than any offset
    their lengths can add up to, and more than any 2-D table (a read of row -1 stays inside it)."""
    total = GUARD_MIN
    for a in arrays:
        if a.dtype.kind in "iu" and a.ndim == 1:
            total += int(np.abs(a.astype(np.int64)).sum())
        elif a.ndim > 1:
            total += int(a.size)
    return min(total, GUARD_MAX)


@functools.cache
def _compiled(source: str, file: str, name: str) -> Any:
    from cupy.cuda.compiler import CompileException  # noqa: PLC0415 - optional, GPU only

    module = cupy().RawModule(code=source, options=("-std=c++17",))
    try:
        module.compile()
    except CompileException as exc:
        raise InputError(file, f"{name}: the kernel does not compile: {first_compiler_error(str(exc))}") from None
    return module


def compile_op(source: OpSource) -> CompiledOp:
    op = CompiledOp(source, lambda: _compiled(source.source, source.file.as_posix(), source.name))
    op.module()
    return op


def compile_checkout_ops(root: Path, names: Iterable[str] | None = None) -> dict[str, CompiledOp]:
    """Each op of ``names`` (default: every slot-mapping op the checkout declares) compiled from the
    checkout at ``root``; a named op the checkout lacks, a kernel not found or not compiling is an
    ``InputError``; no CuPy or no GPU is ``MissingDependency``."""
    root = Path(root)
    files = find_op_files(root)
    wanted = list(files) if names is None else list(names)
    for name in wanted:
        if name not in OP_NAMES:
            raise InputError("op", f"{name!r} is not one of the ops the suite compiles ({', '.join(OP_NAMES)})")
        if name not in files:
            raise InputError("fastdeploy", f"no PD_BUILD_STATIC_OP({name}) in {root}/custom_ops/gpu_ops/*.cu")
    cupy()
    return {name: compile_op(read_op(root, name, files[name])) for name in wanted}
