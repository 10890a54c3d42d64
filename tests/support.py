"""Shared helpers of the suite's own tests: fixture paths, state builders, the Paddle skip."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from validation.impls import paddle_runtime
from validation.state import BatchState

ROOT = Path(__file__).resolve().parents[1]
STATES = ROOT / "fixtures" / "states"

requires_paddle = pytest.mark.skipif(
    not paddle_runtime.available(), reason="paddlepaddle is not installed (pip install 'dsa-validation[cpu]')"
)


def state_files() -> list[Path]:
    return sorted(STATES.glob("*.json"))


def load_fixture(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def make_state(**fields: Any) -> BatchState:
    """A valid one-request decode state with ``fields`` overriding any part of it."""
    base: dict[str, Any] = dict(
        block_size=64, seq_lens_encoder=[0], seq_lens_decoder=[10], seq_lens_this_time=[1], block_tables=[[3, -1]]
    )
    base.update(fields)
    return BatchState.from_dict(base)
