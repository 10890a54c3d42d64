"""Device-timed cost of one step of each CUDA path: eager launches and CUDA-graph replays.

The timed region is the step's device work only: ``path.launch(d, inputs, check)`` (see
``validation.impls.cuda_paths``), with the inputs already on the device and the persistent buffers,
fault flags and kernels already allocated and compiled by one seam call beforehand. Inside it: the
path's kernel launches (position op, the slot formula once per step or twice per layer, the copy into
the persistent buffer, whatever a path adds) and CuPy's own launch work on the host. Outside it: the
host-to-device copy of the inputs (FastDeploy keeps them on the device), the seam call's fault checks
and read-backs, and any numpy/Python work on the state, none of which a graph could capture anyway.

- eager: a CUDA event, one ``launch`` from Python, a CUDA event, then a synchronise; the GPU starts
  idle, so the interval is what one step costs the GPU timeline when launched kernel by kernel
  (launch-bound for these tiny kernels).
- graph: the same ``launch`` captured once on a non-blocking stream (``begin_capture`` /
  ``end_capture``; allocations made while capturing come from a pool kept only for that graph), then
  replayed: a spin kernel keeps the GPU busy while the host records the start event, launches the
  graph and records the end event, so the interval is the replay's own device time (the graph's
  launch on the device included), not the host's submission latency.
- in_graph: ``IN_GRAPH_STEPS`` launches captured back to back into one graph, replayed the same way,
  the interval divided by ``IN_GRAPH_STEPS``: what one step adds inside a larger captured graph (as in
  a serving engine, whose whole decode step is one graph), with the graph's own launch spread out.

Every figure is the median (with p10/p25/p75/p90) of ``repeats`` samples after ``warmup`` unrecorded
runs. The floor is measured the same way in every mode: one empty kernel (eagerly, alone in a graph,
``IN_GRAPH_STEPS`` of them in one graph).
After timing, each path's graph outputs are compared with what its seam call returned (bit for bit)
and its fault and spill counters are read: a step that computed something else is an error, not a
figure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from validation.impls import cuda_paths
from validation.impls.cuda_paths import Launched

# One thread spins for this many clock cycles (about 50 us at the H200's 1.98 GHz boost clock):
# longer than the host needs to record an event, launch a graph and record another.
SPIN_CYCLES = 100_000
IN_GRAPH_STEPS = 20
_TIMING_SOURCE = r"""
extern "C" __global__ void empty_kernel() {}
extern "C" __global__ void spin(long long cycles) {
    long long start = clock64();
    while (clock64() - start < cycles) {}
}
"""


def _no_check(describe: Callable[[int], str]) -> None:
    """Fault checks are deferred while timing: the counters are read once afterwards (``clean``)."""


class CudaTimer:
    """Times work on one non-blocking stream with CUDA events; samples in microseconds."""

    def __init__(self, repeats: int, warmup: int) -> None:
        cp = cuda_paths.cupy()
        self.cp = cp
        self.repeats, self.warmup = repeats, warmup
        self.stream = cp.cuda.Stream(non_blocking=True)
        module = cp.RawModule(code=_TIMING_SOURCE)
        self._empty = module.get_function("empty_kernel")
        self._spin = module.get_function("spin")
        self._start, self._end = cp.cuda.Event(), cp.cuda.Event()

    def eager(self, work: Callable[[], Any]) -> list[float]:
        for _ in range(self.warmup):
            work()
        samples = []
        for _ in range(self.repeats):
            self._start.record(self.stream)
            work()
            self._end.record(self.stream)
            self._end.synchronize()
            samples.append(self.cp.cuda.get_elapsed_time(self._start, self._end) * 1e3)
        return samples

    def capture(self, work: Callable[[], Any], steps: int = 1) -> tuple[Any, list[Any], Any]:
        """(graph of ``steps`` calls of ``work``, what each returned, the pool their allocations came
        from: keep all three alive while the graph replays)."""
        cp = self.cp
        pool = cp.cuda.MemoryPool()
        self.stream.synchronize()
        with cp.cuda.using_allocator(pool.malloc):
            self.stream.begin_capture()
            try:
                result = [work() for _ in range(steps)]
            finally:
                graph = self.stream.end_capture()
        graph.upload(self.stream)
        return graph, result, pool

    def replay(self, graph: Any, steps: int = 1) -> list[float]:
        for _ in range(self.warmup):
            graph.launch(self.stream)
        samples = []
        for _ in range(self.repeats):
            self._spin((1,), (1,), (np.int64(SPIN_CYCLES),), stream=self.stream)
            self._start.record(self.stream)
            graph.launch(self.stream)
            self._end.record(self.stream)
            self._end.synchronize()
            samples.append(self.cp.cuda.get_elapsed_time(self._start, self._end) * 1e3 / steps)
        return samples

    def floor(self) -> dict[str, list[float]]:
        """One empty kernel: launched eagerly, alone in a graph, and ``IN_GRAPH_STEPS`` to a graph."""
        launch = lambda: self._empty((1,), (1,), (), stream=self.stream)  # noqa: E731
        alone, _, _ = self.capture(launch)
        many, _, _ = self.capture(launch, IN_GRAPH_STEPS)
        return {"eager": self.eager(launch), "graph": self.replay(alone),
                "in_graph": self.replay(many, IN_GRAPH_STEPS)}

    def path(self, fn: Any, inputs: Mapping[str, Any], graph: bool) -> dict[str, list[float]]:
        """Samples of one path instance on one step's inputs; raises ``StepMismatch`` if it computed
        something other than its seam call did."""
        with self.stream:
            expected = fn(inputs)  # compiles, allocates the persistent buffers, checks every fault
            d = fn.device_inputs(inputs)
            step = lambda: fn.launch(d, inputs, _no_check)  # noqa: E731
            out = {"eager": self.eager(step)}
            _same(step(), expected, "eager launch")
            if graph:
                for mode, steps in (("graph", 1), ("in_graph", IN_GRAPH_STEPS)):
                    captured, launched, _pool = self.capture(step, steps)
                    out[mode] = self.replay(captured, steps)
                    self.stream.synchronize()
                    _same(launched[0], expected, f"{mode} replay, first step")
                    _same(launched[-1], expected, f"{mode} replay, last step")
            if not fn.clean():
                raise StepMismatch("a kernel counted a spill or flagged a fault while being timed")
        return out


class StepMismatch(RuntimeError):
    """The timed device work did not compute what the path's seam call computed."""


def _same(step: Launched, expected: Mapping[str, Any], where: str) -> None:
    got = {"position_ids": step.position_ids.get()}
    if step.layers is not None:
        got["layers"] = [{c: a.get() for c, a in layer.items()} for layer in step.layers]
    else:
        got["slot_mapping"] = step.slot_mapping.get()
    for key, value in got.items():
        want = expected[key]
        same = (all(np.array_equal(g[c], w[c]) for g, w in zip(value, want, strict=True) for c in g)
                if key == "layers" else np.array_equal(value, want))
        if not same:
            raise StepMismatch(f"{where}: {key} differs from the seam call's")


def environment() -> dict[str, str]:
    """GPU, driver, CUDA and library versions, for the report."""
    import platform  # noqa: PLC0415
    import subprocess  # noqa: PLC0415

    cp = cuda_paths.cupy()
    runtime = cp.cuda.runtime
    props = runtime.getDeviceProperties(cp.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    try:
        driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader", "-i",
                                 str(cp.cuda.Device().id)], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        driver = ""

    def version(v: int) -> str:
        return f"{v // 1000}.{v % 1000 // 10}"

    return {"gpu": name, "driver": driver or "unknown (no nvidia-smi)", "driver_cuda": version(runtime.driverGetVersion()),
            "runtime_cuda": version(runtime.runtimeGetVersion()), "cupy": cp.__version__, "numpy": np.__version__,
            "python": platform.python_version()}
