"""The pre-merge gate itself: the ``ci`` profile over every property, legacy vs single_step.

Asserts what the suite must report (not silence), the profile's size, and the one REGRESSION the
faithful models show: single_step's never-reset slot-buffer tail reaching padded rows across steps
where legacy maps them to an unallocated block (README: "What the suite finds in #7367").
"""

from __future__ import annotations

from pathlib import Path

from properties.runner import run_fuzz
from support import requires_paddle


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
    assert result.properties["multi_step"].failed
    assert {s for v, s in scenarios if v == "REGRESSION"} <= {"multi_step padding:capture", "multi_step padding:overlap"}
    assert result.exit_code == 1
