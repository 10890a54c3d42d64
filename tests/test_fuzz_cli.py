"""``dsa-validate fuzz``: exit codes, the one-line error for bad input, the summary and reproduction."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import requires_paddle
from validation.cli import main


def test_bad_block_sizes_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fuzz", "--block-sizes", "16,x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "block-sizes" in err


def test_unknown_candidate_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fuzz", "--baseline", "oracle", "--candidate", "nope", "--max-examples", "1"]) == 2
    assert "candidate" in capsys.readouterr().err


@requires_paddle
def test_fuzz_prints_findings_and_a_reproduction_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["fuzz", "--profile", "dev", "--properties", "equivalence", "--max-examples", "20",
                 "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0 and "SHARED-BUG" in out and "dsa-validate check --state" in out


@requires_paddle
def test_fuzz_against_the_oracle_exits_1_and_writes_the_counterexample(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["fuzz", "--baseline", "oracle", "--profile", "dev", "--properties", "truth",
                 "--max-examples", "20", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1 and "FAILED truth" in out and (tmp_path / "truth.json").is_file()


def test_scenarios_missed_by_a_shared_budget_exit_1_and_say_how_to_reach_them(tmp_path: Path,
                                                                             capsys: pytest.CaptureFixture[str]) -> None:
    # The ci profile's examples spread over four block sizes leave required scenarios unreached at some of them.
    code = main(["fuzz", "--profile", "ci", "--baseline", "oracle", "--candidate", "oracle",
                 "--block-sizes", "16,48,100,256", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1 and "NOT REACHED (required by profile ci)" in out
    assert "shared by 4 block sizes; --time-budget DURATION" in out
