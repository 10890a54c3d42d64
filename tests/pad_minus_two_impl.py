"""A slot mapping right everywhere except that it writes -2, not -1, on every padded row (plugged in through the
seam): FastDeploy's cache writers skip it (any negative slot), vLLM's PAD_SLOT_ID contract (exactly -1) does not."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from validation.oracle import Oracle


class PadsWithMinusTwo(Oracle):
    def __call__(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        right = super().__call__(inputs)
        slots = right["slot_mapping"].copy()
        slots[len(right["position_ids"]):] = -2
        return {"position_ids": right["position_ids"], "slot_mapping": slots}
