"""Time one step of each code path (median of repeats), on Paddle (CPU here) or CUDA kernels (GPU).

The point of #7367 was to compute slots once per step instead of twice per layer; this measures
what that costs in our faithful models, per batch shape, so the numbers in BENCHMARKS.md come
from a command anyone can rerun:

    python benchmarks/bench_paths.py --backend paddle --layers 61 --repeats 20
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from validation import seam
from validation.state import BatchState

PATHS = ("legacy", "single_step", "chunked_fix", "get_position_ids", "fused")


def decode_batch(bsz: int, context: int, block_size: int = 64) -> BatchState:
    """``bsz`` decoding requests with ``context`` cached tokens each, blocks laid out contiguously."""
    width = context // block_size + 1
    return BatchState.from_dict(dict(
        block_size=block_size, seq_lens_encoder=[0] * bsz, seq_lens_decoder=[context] * bsz,
        seq_lens_this_time=[1] * bsz, block_tables=[list(range(r * width, (r + 1) * width)) for r in range(bsz)],
        padded_num_tokens=bsz, max_num_batched_tokens=8192))


def prefill_batch(bsz: int, length: int, block_size: int = 64) -> BatchState:
    width = (length - 1) // block_size + 1
    return BatchState.from_dict(dict(
        block_size=block_size, seq_lens_encoder=[length] * bsz, seq_lens_decoder=[0] * bsz,
        seq_lens_this_time=[length] * bsz, block_tables=[list(range(r * width, (r + 1) * width)) for r in range(bsz)],
        max_num_batched_tokens=8192))


SHAPES = {
    "decode 64 x 4k": lambda: decode_batch(64, 4096),
    "decode 256 x 1k": lambda: decode_batch(256, 1024),
    "prefill 4 x 2048": lambda: prefill_batch(4, 2048),
}


def measure(backend: str, layers: int, repeats: int) -> list[dict]:
    rows = []
    for shape, build in SHAPES.items():
        inputs = build().step_inputs()
        for path in PATHS:
            fn = seam.resolve(path, backend=backend, num_layers=layers).new()
            fn(inputs)  # warm-up: kernel compilation, buffer allocation
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                fn(inputs)
                times.append(time.perf_counter() - start)
            rows.append({"backend": backend, "shape": shape, "path": path, "layers": layers,
                         "median_ms": round(statistics.median(times) * 1e3, 3), "repeats": repeats})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=seam.BACKENDS, default="paddle")
    parser.add_argument("--layers", type=int, default=61, help="decoder layers (DeepSeek-V3.2 has 61)")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    rows = measure(args.backend, args.layers, args.repeats)
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
