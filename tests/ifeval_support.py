"""Shared paths for the IFEval tests: the shipped sample and the real 541 prompts (never copied here)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from evals.ifeval.data import sample_paths

REPO = Path(__file__).resolve().parent.parent
SAMPLE_INPUT, SAMPLE_RESPONSES = sample_paths()
SAMPLE_EXPECTED = SAMPLE_INPUT.parent / "sample_expected.json"


def real_data_path() -> Path:
    """``$DSA_IFEVAL_DATA`` or ``../shared/ifeval/input_data.jsonl``; skips the test when absent."""
    candidate = Path(os.environ.get("DSA_IFEVAL_DATA") or REPO.parent / "shared" / "ifeval" / "input_data.jsonl")
    if not candidate.is_file():
        reason = f"real IFEval prompts not found at {candidate} (set DSA_IFEVAL_DATA)"
        print(reason)
        pytest.skip(reason)
    return candidate
