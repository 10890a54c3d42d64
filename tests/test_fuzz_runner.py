"""The runner's verdicts and exit codes, and the state machine catching stale state."""

from __future__ import annotations

from pathlib import Path

import pytest

from properties.regressions import all_regressions
from properties.fuzz import run_fuzz
from tests.support import requires_paddle

pytestmark = requires_paddle
FAULTY = f"{Path(__file__).resolve().parent / 'faulty_impls.py'}"


def test_oracle_baseline_catches_the_chunked_prefill_bug(tmp_path: Path) -> None:
    result = run_fuzz("oracle", "single_step", profile="dev", properties=["equivalence"], out_dir=tmp_path, jobs=1)
    stats = result.properties["equivalence"]
    assert result.exit_code == 1 and stats.failed and stats.counterexample is not None
    assert Path(stats.path).is_file() and "REGRESSION" in stats.counterexample["expected"]["verdicts"]


def test_legacy_vs_single_step_reports_shared_bugs_and_fixes_without_failing(tmp_path: Path) -> None:
    result = run_fuzz("legacy", "single_step", profile="dev", properties=["equivalence", "truth"],
                      out_dir=tmp_path, jobs=1)
    scenarios = {(g.verdict, g.scenario) for g in result.groups}
    assert ("SHARED-BUG", "phase:chunked") in scenarios and ("REGRESSION", "padding:capture") in scenarios
    # the zero-filled slot buffer's padding REGRESSIONs are known findings: reported, not failing
    assert all(g.known for g in result.groups if g.verdict == "REGRESSION")
    assert result.exit_code == 0
    assert run_fuzz("legacy", "single_step", profile="dev", properties=["equivalence"], strict=True,
                    out_dir=tmp_path, jobs=1, max_examples=5).exit_code == 1


def test_tail_reset_fixes_every_padding_finding_with_no_regression(tmp_path: Path) -> None:
    result = run_fuzz("single_step", "tail_reset", profile="dev", properties=["equivalence"], out_dir=tmp_path,
                      jobs=1, use_known=False)
    padding = [g for g in result.groups if "padding" in g.scenario]
    assert padding and all(g.verdict == "FIX" for g in padding) and result.exit_code == 0


def test_chunked_fix_turns_the_shared_bug_into_a_fix(tmp_path: Path) -> None:
    result = run_fuzz("legacy", "chunked_fix", profile="dev", properties=["equivalence"], out_dir=tmp_path, jobs=1)
    scenarios = {(g.verdict, g.scenario) for g in result.groups}
    assert ("FIX", "phase:chunked") in scenarios and ("SHARED-BUG", "phase:chunked") not in scenarios


def test_block_size_16_reports_the_legacy_indexer(tmp_path: Path) -> None:
    result = run_fuzz("legacy", "single_step", profile="dev", block_sizes=[16], properties=["equivalence"],
                      out_dir=tmp_path, jobs=1)
    assert any(g.verdict == "FIX" and g.consumers["indexer"] and not g.consumers["attention"] for g in result.groups)


def test_state_machine_catches_a_stale_tail_candidate(tmp_path: Path) -> None:
    result = run_fuzz("oracle", f"{FAULTY}:StaleTail", profile="ci", properties=["multi_step"],
                      out_dir=tmp_path, jobs=1, max_examples=80)
    stats = result.properties["multi_step"]
    assert stats.failed and stats.counterexample is not None and stats.counterexample.get("history")


def test_single_step_properties_pass_a_correct_candidate(tmp_path: Path) -> None:
    result = run_fuzz("oracle", f"{FAULTY}:Correct", profile="dev", out_dir=tmp_path, max_examples=30)
    assert result.exit_code == 0, [(n, p.error) for n, p in result.properties.items() if p.failed]


@pytest.mark.parametrize("regression", all_regressions(), ids=lambda r: r.name)
def test_saved_regression_reproduces_its_verdicts(regression) -> None:
    """Each saved counterexample still gives exactly the verdicts it was saved with."""
    assert regression.replay().verdicts == regression.expected
