"""The pytest plugin's face of the reducer: a failing property's report carries the reduced state and its check line.

Run as a user runs it (``pytest --pyargs properties`` in a fresh process), not by calling the hook."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from properties.mutation import MUTANT_MODULE
from validation.state import BatchState


def test_a_failing_property_reports_its_reduced_counterexample(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
         "--pyargs", "properties", "-k", "truth", "--dsa-baseline", "oracle",
         "--dsa-candidate", f"{MUTANT_MODULE}:WrongPast255", "--hypothesis-profile", "ci"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1, done.stdout[-2000:]
    section = done.stdout.split("dsa reduced counterexample", 1)[1]
    assert "reduced from 300 requests" in section
    line = next(l for l in section.splitlines() if l.startswith("dsa-validate check --state "))
    state = BatchState.from_json(line.split()[3])
    assert state.bsz == 257 and state.num_tokens == 1
