"""Host-timed cost of one step of each Paddle path (``--backend paddle``: Paddle's CPU build here).

There are no device events and no CUDA graphs on the CPU, so a sample is ``time.perf_counter``
around one whole seam call ``fn(inputs)``: the conversion of the numpy inputs to Paddle tensors, the
Paddle ops, and the read-back of every result to numpy are all inside the timed region. Figures are
host wall-clock medians (with p10/p25/p75/p90) of ``repeats`` calls after ``warmup`` unrecorded
calls, labelled as such in the table and the JSON; they are not comparable with the CUDA figures.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

GRAPH_SKIPPED = "graph timing skipped: the Paddle backend runs on the CPU here, which has no CUDA graphs to capture"


def time_path(fn: Any, inputs: Mapping[str, Any], repeats: int, warmup: int) -> dict[str, list[float]]:
    for _ in range(warmup):
        fn(inputs)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(inputs)
        samples.append((time.perf_counter() - start) * 1e6)
    return {"eager": samples}


def environment() -> dict[str, str]:
    import platform  # noqa: PLC0415

    import numpy  # noqa: PLC0415

    from validation.impls.paddle_runtime import paddle  # noqa: PLC0415

    return {"cpu": platform.processor() or platform.machine(), "paddle": paddle().__version__,
            "numpy": numpy.__version__, "python": platform.python_version()}
