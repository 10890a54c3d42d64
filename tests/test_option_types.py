"""Numeric options are refused at parse time when no run could use them (exit 2, one line naming the option).

Why: ``ifeval run --timeout -1`` used to start, fail every prompt against the server and exit 1 as if the server
were down; ``--temperature nan`` was sent to the server; ``--alpha 2`` reached the bootstrap.
"""

from __future__ import annotations

import pytest

from validation.cli import main

RUN = ["ifeval", "run", "--base-url", "http://127.0.0.1:9", "--model", "m", "--out", "never-made"]
COMPARE = ["ifeval", "compare", "a", "b"]
HISTORY = ["ifeval", "history", "a"]


@pytest.mark.parametrize(("argv", "option", "value", "rule"), [
    (RUN, "--timeout", "0", "must be > 0"),
    (RUN, "--timeout", "-1", "must be > 0"),
    (RUN, "--timeout", "inf", "must be a finite number"),
    (RUN, "--temperature", "nan", "must be a finite number"),
    (RUN, "--temperature", "-0.5", "must be >= 0"),
    (RUN, "--retry-backoff", "-1", "must be >= 0"),
    (RUN, "--retry-backoff", "soon", "must be a number"),
    (COMPARE, "--alpha", "0", "must lie strictly between 0 and 1"),
    (COMPARE, "--alpha", "1.5", "must lie strictly between 0 and 1"),
    (HISTORY, "--alpha", "nan", "must be a finite number"),
    (HISTORY, "--margin", "-inf", "must be a finite number"),
])
def test_a_value_no_run_could_use_is_refused_in_one_line(capsys: pytest.CaptureFixture[str], tmp_path, monkeypatch,
                                                        argv: list[str], option: str, value: str, rule: str) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main([*argv, f"{option}={value}"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1
    assert f"argument {option}: {rule}" in err
    assert list(tmp_path.iterdir()) == []  # refused before any folder was made


def test_a_negative_margin_is_a_gate_that_demands_an_improvement(capsys: pytest.CaptureFixture[str]) -> None:
    # Accepted by the parser: the command then fails on the missing run folders, not on the margin.
    assert main([*COMPARE, "--margin=-0.5"]) == 2
    assert "RUN_BEFORE" in capsys.readouterr().err
