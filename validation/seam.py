"""The plug-in seam: every baseline and candidate is resolved here, and called through one contract.

An implementation is named by registry name (``legacy``), by ``package.module:NAME``, by
``path/to/file.py:NAME``, or by ``fastdeploy:PATH`` (a FastDeploy checkout's own code, optionally
``fastdeploy:PATH+FILE.patch``: see ``validation/fastdeploy/``). ``NAME`` is a function, or a class whose instances are such functions;
a class is instantiated with no arguments once per test case or multi-step run, so persistent
buffers can be modelled. It is called with the mapping of ``BatchState.step_inputs()`` and returns a
mapping with ``position_ids`` ([num_tokens], int32 or int64) and ``slot_mapping`` (int64,
[padded_num_tokens]), optionally ``indexer_slot_mapping`` (same form; defaults to ``slot_mapping``).
Built-in paths may instead return ``layers``: one ``{"indexer": ..., "attention": ...}`` per layer,
and ``hazards``: memory hazards the model observed (writes past a buffer).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from validation.errors import InputError, MissingDependency
from validation.fastdeploy import checkout_spec

StepFn = Callable[[Mapping[str, Any]], Mapping[str, Any]]

CONSUMERS = ("indexer", "attention")

# Built-in implementations by backend. ``paddle`` runs Paddle on its current device (CPU here, GPU
# where Paddle has CUDA); ``cuda`` runs the same code paths as real CUDA kernels through CuPy.
BUILTINS: dict[str, dict[str, str]] = {
    "paddle": {
        "legacy": "validation.impls.paddle_paths:Legacy",
        "single_step": "validation.impls.paddle_paths:SingleStep",
        "chunked_fix": "validation.impls.paddle_paths:ChunkedFix",
        "get_position_ids": "validation.impls.paddle_paths:GetPositionIds",
        "fused": "validation.impls.paddle_paths:Fused",
        "tail_reset": "validation.impls.paddle_paths:TailReset",
        "tail_reset_fused": "validation.impls.paddle_paths:TailResetFused",
    },
    "cuda": {
        "legacy": "validation.impls.cuda_paths:Legacy",
        "single_step": "validation.impls.cuda_paths:SingleStep",
        "chunked_fix": "validation.impls.cuda_paths:ChunkedFix",
        "get_position_ids": "validation.impls.cuda_paths:GetPositionIds",
        "fused": "validation.impls.cuda_paths:Fused",
        "tail_reset": "validation.impls.cuda_paths:TailReset",
        "tail_reset_fused": "validation.impls.cuda_paths:TailResetFused",
    },
}
# Backend-independent entries: the oracle itself, so ``--baseline oracle`` checks a candidate against the truth.
COMMON = {"oracle": "validation.oracle:Oracle"}
BACKENDS = tuple(BUILTINS)


@dataclass
class Implementation:
    """A resolved implementation: ``new()`` gives a fresh step function (fresh persistent state)."""

    name: str
    target: Any
    builtin: bool = False
    num_layers: int | None = None

    def new(self) -> StepFn:
        if inspect.isclass(self.target):
            if self._passes_num_layers:
                return self.target(num_layers=self.num_layers)
            return self.target()
        return self.target

    @functools.cached_property
    def _passes_num_layers(self) -> bool:
        """Whether ``new()`` hands ``num_layers`` to the class: read once, since a fuzz run makes an instance
        per state and ``inspect.signature`` cost about as much as a Paddle op."""
        return self.builtin and self.num_layers is not None and \
            "num_layers" in inspect.signature(self.target).parameters


def names(backend: str = "paddle") -> list[str]:
    """Registry names available for ``backend``."""
    return sorted({**COMMON, **BUILTINS[backend]})


def resolve(spec: str, *, backend: str = "paddle", num_layers: int | None = None, field_name: str = "candidate") -> Implementation:
    """Resolve a registry name, ``module:NAME`` or ``file.py:NAME`` into an ``Implementation``."""
    if backend not in BUILTINS:
        raise InputError("backend", f"unknown backend {backend!r} (choose from: {', '.join(BACKENDS)})")
    table = {**BUILTINS[backend], **COMMON}
    if spec in BUILTINS[backend]:  # a built-in path needs its backend's runtime; a plug-in brings its own
        _require_backend(backend)
    if spec.startswith(checkout_spec.PREFIX):  # a FastDeploy checkout's own code (validation/fastdeploy/)
        _require_backend("paddle")  # its Python lines run on Paddle
        name, target = checkout_spec.resolve_spec(spec, field_name)
        return Implementation(name, target, builtin=True, num_layers=num_layers)
    if spec in table:
        return Implementation(spec, _load(table[spec], field_name), builtin=True, num_layers=num_layers)
    if ":" not in spec:
        raise InputError(field_name, f"unknown implementation {spec!r}: use one of {', '.join(sorted(table))}, "
                         "module:NAME or path/to/file.py:NAME")
    return Implementation(spec, _load(spec, field_name))


def _require_backend(backend: str) -> None:
    """A built-in path needs its backend's runtime (Paddle; CuPy and a device): without it, say so once before any
    work. Otherwise every state of ``check`` or ``e2e`` came back as a SHARED-BUG of two sides that both failed to
    launch, exit 0."""
    if backend == "paddle":
        from validation.impls.paddle_runtime import paddle  # noqa: PLC0415 - Paddle only when a path needs it

        paddle()  # MissingDependency, one line, when it is not installed
        return
    from validation.impls import cuda_paths  # noqa: PLC0415 - CuPy only when the backend is asked for

    reason = cuda_paths.available()
    if reason == cuda_paths.NO_CUPY:
        raise MissingDependency("cupy", "gpu", "the CUDA backend")
    if reason is not None:
        raise InputError("backend", f"cuda cannot run here: {reason}")


def _load(spec: str, field_name: str) -> Any:
    where, _, attr = spec.rpartition(":")
    if not where or not attr:
        raise InputError(field_name, f"{spec!r} must look like module:NAME or path/to/file.py:NAME")
    if where.endswith(".py") or "/" in where:
        path = Path(where)
        if not path.is_file():
            raise InputError(field_name, f"no such file {where!r}")
        module_name = f"dsa_plugin_{abs(hash(str(path.resolve())))}"
        module_spec = importlib.util.spec_from_file_location(module_name, path)
        if module_spec is None or module_spec.loader is None:
            raise InputError(field_name, f"cannot load {where!r} as Python")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_name] = module
        module_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise InputError(field_name, f"cannot import module {where!r}: {exc}") from None
    try:
        target = getattr(module, attr)
    except AttributeError:
        raise InputError(field_name, f"{where!r} has no attribute {attr!r}") from None
    if not callable(target):
        raise InputError(field_name, f"{spec!r} is not a function or class")
    return target


@dataclass
class Observation:
    """One side's output in normal form: what each consumer of each layer reads, or why nothing."""

    position_ids: np.ndarray | None = None
    layers: list[dict[str, np.ndarray]] = field(default_factory=list)
    hazards: list[str] = field(default_factory=list)
    error: str | None = None


def to_numpy(value: Any) -> np.ndarray:
    """Bring a numpy, Paddle, torch or CuPy array to host numpy, keeping its dtype."""
    if isinstance(value, np.ndarray):
        return value
    if type(value).__module__.startswith("cupy"):
        return value.get()
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # torch
        return value.detach().cpu().numpy()
    if hasattr(value, "numpy"):  # paddle
        return np.asarray(value.numpy())
    raise TypeError(f"expected an array, got {type(value).__name__}")


def observe(fn: StepFn, inputs: Mapping[str, Any], num_layers: int) -> Observation:
    """Call ``fn`` on ``inputs`` and normalise its result; an exception becomes ``Observation.error``."""
    try:
        result = fn(inputs)
    except Exception as exc:  # noqa: BLE001 - a crashing implementation is a finding, not our crash
        return Observation(error=f"{type(exc).__name__}: {exc}")
    if not isinstance(result, Mapping):
        return Observation(error=f"returned {type(result).__name__}, not a mapping")
    try:
        positions = to_numpy(result["position_ids"])
        if "layers" in result:
            layers = [{c: to_numpy(layer[c]) for c in CONSUMERS} for layer in result["layers"]]
        else:
            attention = to_numpy(result["slot_mapping"])
            indexer = to_numpy(result.get("indexer_slot_mapping", result["slot_mapping"]))
            layers = [{"indexer": indexer, "attention": attention} for _ in range(num_layers)]
    except KeyError as exc:
        return Observation(error=f"result has no {exc.args[0]!r}")
    except TypeError as exc:
        return Observation(error=f"result is malformed: {exc}")
    return Observation(position_ids=positions, layers=layers, hazards=list(result.get("hazards", ())))
