"""A slot mapping that goes wrong mid-request, for the server's failure tests (plugged in through the seam).

Right (the oracle's slots) until a token's position reaches ``FAIL_AT``; from there it maps the token past the end
of any cache, so the model's cache write raises, as a real out-of-bounds bug would make a step fail.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from validation.oracle import Oracle

FAIL_AT = 12
PAST_ANY_CACHE = 1 << 40


class FailsPastPosition(Oracle):
    def __call__(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        right = super().__call__(inputs)
        slots = right["slot_mapping"].copy()
        n = len(right["position_ids"])
        slots[:n][np.asarray(right["position_ids"]) >= FAIL_AT] = PAST_ANY_CACHE
        return {"position_ids": right["position_ids"], "slot_mapping": slots}
