"""The physical floor of a step's slot mapping: the bytes its kernels must move, over HBM bandwidth.

Counted per kernel as compulsory traffic (each input element read once, each output written once):

- position op (``<<<1, bsz>>>``): reads ``seq_lens_encoder/decoder/this_time`` (3 x 4 B per request)
  and writes one position per token (4 B, int32);
- per-layer slot formula over ``r`` rows: reads a batch id, a position and one block-table entry
  (3 x 4 B) and writes an int64 slot (8 B) per row;
- single-step paths copy the fresh slots into the persistent buffer (8 B read + 8 B written per token);
- the fused kernel reads ``seq_lens_decoder/this_time`` (2 x 4 B per request) and one table entry per
  token, and writes an int64 position and an int64 slot per token.

Legacy runs the formula twice per layer over the launch; the others once per step. A path is
recognised by the model it descends from (``Legacy``, ``SingleStep``, ``Fused``); a path that
descends from none of them (an outside plug-in) has no byte count.

Bandwidth: 4.8 TB/s, the HBM3e memory bandwidth of the H200 SXM 141 GB in NVIDIA's H200 product page
and datasheet (https://www.nvidia.com/en-us/data-center/h200/). It is a peak figure; kernels this
small never reach it, so ``bytes / bandwidth`` is a floor the launch cost dwarfs, shown to say so.
"""

from __future__ import annotations

from validation.bench.shapes import Shape

H200_BANDWIDTH = 4.8e12  # bytes per second
BANDWIDTH_SOURCE = "NVIDIA H200 SXM 141 GB, HBM3e 4.8 TB/s (nvidia.com/en-us/data-center/h200, datasheet)"
I32, I64 = 4, 8


def _formula(rows: int) -> int:
    return rows * (3 * I32 + I64)


def step_bytes(path_class: type, shape: Shape, layers: int) -> int | None:
    """Compulsory bytes one step of ``path_class`` moves on ``shape`` with ``layers`` layers, or None."""
    lineage = {cls.__name__ for cls in path_class.__mro__}
    n, bsz = shape.num_tokens, shape.bsz
    position_op = 3 * I32 * bsz + I32 * n
    if "Legacy" in lineage:
        return position_op + 2 * layers * _formula(n)
    if "SingleStep" in lineage:
        return position_op + _formula(n) + 2 * I64 * n
    if "Fused" in lineage:
        return 2 * I32 * bsz + n * (I32 + 2 * I64)
    return None


def floor_us(nbytes: int | None, bandwidth: float = H200_BANDWIDTH) -> float | None:
    return None if nbytes is None else nbytes / bandwidth * 1e6
