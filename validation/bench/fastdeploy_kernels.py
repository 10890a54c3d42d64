"""Device time of FastDeploy's own compiled ops (``validation.fastdeploy.compiled_ops``) on the bench shapes.

Each op of each checkout gets the shape's step as the runner hands it over (``kernel_fidelity.op_arrays``:
lengths, the whole persistent buffers, the table, the batch ids). Its host wrapper is executed once
while a CUDA graph captures what it launches (the wrapper's own grid, block and allocations), and the
graph is replayed as ``CudaTimer`` replays the models' steps: ``graph`` one op per replay, ``in_graph``
``IN_GRAPH_STEPS`` back to back. The host wrapper's interpretation is outside the timed region (a
compiled wrapper's host cost is not what the GPU spends), so the figures are the kernels' device time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from validation.bench import timing_report as report
from validation.bench.cuda_timer import IN_GRAPH_STEPS, CudaTimer
from validation.bench.shapes import Shape
from validation.fastdeploy.compiled_ops import compile_checkout_ops
from validation.fastdeploy.kernel_fidelity import op_arrays, state_case


def time_checkout_ops(timer: CudaTimer, roots: list[Path], shapes: list[Shape]) -> list[dict[str, Any]]:
    rows = []
    for root in roots:
        for name, op in compile_checkout_ops(root).items():
            for shape in shapes:
                base = {"commit": op.source.commit, "op": name, "origin": op.origin, "shape": shape.name}
                try:
                    with timer.stream:
                        _, run = op.prepare(**op_arrays(op, state_case(shape.state(), shape.name)))
                        run()  # compiles lazily and checks the launch before anything is captured
                        samples = {}
                        for mode, steps in (("graph", 1), ("in_graph", IN_GRAPH_STEPS)):
                            graph, _, _pool = timer.capture(run, steps)
                            samples[mode] = timer.replay(graph, steps)
                    rows += [base | {"mode": m, "stats": report.stats(s), "error": None} for m, s in samples.items()]
                except Exception as exc:  # noqa: BLE001 - an op failing on a shape is reported in its row
                    rows.append(base | {"mode": "graph", "stats": None, "error": f"{type(exc).__name__}: {exc}"})
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    """One line per (checkout, op, shape): median device time per mode."""
    lines = ["FastDeploy's own kernels (compiled from the checkout, launched by its host wrapper), median us:"]
    seen: dict[tuple[str, str, str], dict[str, str]] = {}
    for row in rows:
        cell = f"{row['stats']['median_us']:.2f}" if row["stats"] else f"error: {row['error']}"
        seen.setdefault((row["commit"], row["op"], row["shape"]), {})[row["mode"]] = cell
    for (commit, op, shape), cells in seen.items():
        lines.append(f"  {commit}  {op:<40} {shape:<16} " + "  ".join(f"{m} {c}" for m, c in cells.items()))
    return "\n".join(lines)
