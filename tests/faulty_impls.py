"""Tiny candidates for the runner tests: one right, one that leaks a stale buffer tail across steps."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from validation.oracle import Oracle


class Correct(Oracle):
    """The truth itself, behind the seam (no persistent state): every property must pass it."""


class StaleTail:
    """Right on real tokens, but its slot buffer persists and only ``[:num_tokens]`` is rewritten."""

    def __init__(self) -> None:
        self.buffer: np.ndarray | None = None

    def __call__(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        right = Oracle()(inputs)
        size = int(inputs["max_num_batched_tokens"])
        if self.buffer is None or self.buffer.shape[0] != size:
            self.buffer = np.full(size, -1, dtype=np.int64)
        n = int(inputs["num_tokens"])
        self.buffer[:n] = right["slot_mapping"][:n]
        return {"position_ids": right["position_ids"],
                "slot_mapping": self.buffer[: int(inputs["padded_num_tokens"])].copy()}
