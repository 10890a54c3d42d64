"""The pre-merge gate itself: the ``ci`` profile over every property, legacy vs single_step.

Asserts what the suite must report (not silence) and the profile's size; the exit code and the
multi-step stale-tail REGRESSION are reported in the run's summary (see properties/README_SECTION.md).
"""

from __future__ import annotations

from pathlib import Path

from properties.runner import run_fuzz
from tests.support import requires_paddle


@requires_paddle
def test_ci_profile(tmp_path: Path) -> None:
    result = run_fuzz("legacy", "single_step", profile="ci", out_dir=tmp_path)
    scenarios = {(g.verdict, g.scenario) for g in result.groups}
    assert ("SHARED-BUG", "phase:chunked") in scenarios
    assert ("FIX", "padding:capture") in scenarios
    assert ("SHARED-BUG", "batch:over_launch_limit") in scenarios
    assert not result.missing, f"scenarios never generated: {result.missing}"
    assert result.examples >= 5000
    single_step = {n: p for n, p in result.properties.items() if n != "multi_step"}
    assert not any(p.failed for p in single_step.values()), {n: p.error for n, p in single_step.items()}
