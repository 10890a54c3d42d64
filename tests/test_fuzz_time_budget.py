"""``fuzz --time-budget``: the duration's one-line errors, a run that ends on time with its full report, and
counterexamples that survive a SIGKILL of the whole run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from properties.fuzz import run_fuzz
from properties.time_budget import MIN_TOP_UP_S, REPORT_MARGIN_S, parse_duration
from tests.support import ROOT, requires_paddle
from validation.cli import main
from validation.errors import InputError


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("45m", 2700), ("1h30m", 5400), ("120", 120)])
def test_durations_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "0s", "5x"])
def test_a_bad_duration_is_one_line_and_exit_2(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(InputError):
        parse_duration(text)
    assert main(["fuzz", "--time-budget", text]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "time-budget" in err


@requires_paddle
def test_a_budgeted_run_ends_on_time_with_states_per_block_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the nightly profile's example database stays in here
    budget = 14.0
    result = run_fuzz("legacy", "single_step", profile="nightly", block_sizes=(16, 64), jobs=1, out_dir=tmp_path,
                      properties=["equivalence", "multi_step"], time_budget=budget)
    # the nightly budget is 20,000 examples: only the clock can have ended this run
    assert result.seconds < budget + 5
    assert all(p.cut_short for p in result.properties.values()), {n: (p.examples, p.error) for n, p in result.properties.items()}
    for stats in result.properties.values():
        assert stats.examples == sum(stats.by_block_size.values()) > 0
    assert {16, 64} <= set(result.reached_by_size)
    summary = result.to_dict()
    assert summary["time_budget"] == budget and summary["properties"]["equivalence"]["cut_short_by_time_budget"]


@requires_paddle
def test_a_killed_run_keeps_its_counterexample(tmp_path: Path) -> None:
    """SIGKILL the run (and its workers) once the first counterexample is on disk: the file is whole and
    ``check`` reproduces the failure from it."""
    out = tmp_path / "out"
    command = [sys.executable, "-m", "validation.cli", "fuzz", "--baseline", "oracle", "--candidate", "single_step",
               "--properties", "equivalence,determinism", "--profile", "dev", "--max-examples", "100000",
               "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    found = out / "equivalence.json"
    try:
        limit = time.monotonic() + 240
        while not found.exists() and proc.poll() is None and time.monotonic() < limit:
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
        assert found.exists(), "no counterexample written within 240 s"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    data = json.loads(found.read_text())
    assert "REGRESSION" in data["expected"]["verdicts"]
    # A kill can interrupt a later write (shrinking rewrites the file); it leaves only a hidden ``.*.tmp``
    # beside it: every file a reader opens is whole.
    for path in out.rglob("*.json"):
        json.loads(path.read_text())
    check = subprocess.run([sys.executable, "-m", "validation.cli", "check", "--state", str(found), "--baseline",
                            "oracle", "--candidate", "single_step"], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=300)
    assert check.returncode == 1, check.stdout + check.stderr


@requires_paddle
def test_unused_budget_tops_up_the_scenarios_still_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The nightly's example budgets ended after 2 of its 60 minutes with batch:over_launch_limit missed at six
    block sizes. With example budgets far too small to reach every scenario, the time left must go to rounds
    at the block sizes still missing something, until nothing is missing."""
    from properties import profiles  # noqa: PLC0415

    tiny = {"equivalence": 16, "truth": 16, "invariants": 8, "determinism": 8, profiles.MACHINE: 2}
    monkeypatch.setitem(profiles.BUDGETS, "ci", tiny)
    budget = 120.0
    # In this process: what is tested is which rounds run, not where. The rounds reach the last scenario after
    # about 36 of them (12-20 s on a quiet machine, 62 s beside three CPU hogs). With a worker process per round
    # (jobs=1 since ecd979e) one fresh-clone CI run ended at the budget short of three scenarios; the cause was
    # not found (it passed in every local run, under load too). The fill test below runs its rounds in workers.
    result = run_fuzz("legacy", "single_step", profile="ci", block_sizes=(16, 64), in_process=True,
                      out_dir=tmp_path, time_budget=budget)
    assert result.top_ups, "the first round reached everything: the budgets are not tiny enough to test top-ups"
    assert result.missing == [] and result.exit_code == 0, (result.missing, result.seconds, result.top_ups)
    assert result.seconds < budget + 5
    first = result.top_ups[0]
    assert first["seed"] == 1 and first["missing_before"]
    for top_up in result.top_ups:  # each round draws only at the block sizes that were still missing something
        assert top_up["block_sizes"] == sorted({int(m.rsplit(" ", 1)[1]) for m in top_up["missing_before"]})
    for stats in result.properties.values():
        assert stats.examples == sum(stats.by_block_size.values())
    assert result.properties["equivalence"].examples > tiny["equivalence"]  # the rounds' states are counted
    assert result.to_dict()["top_up_rounds"] == result.top_ups


@requires_paddle
def test_fill_budget_keeps_fuzzing_until_the_budget_is_spent(tmp_path: Path) -> None:
    """Without ``fill_budget`` a 60-minute nightly ended after 5-8 minutes; with it, rounds with new seeds run
    until too little time is left for another, and the run still ends on time."""
    budget = 40.0
    result = run_fuzz("legacy", "single_step", profile="ci", block_sizes=(64,), properties=["equivalence", "truth"],
                      jobs=1, out_dir=tmp_path, time_budget=budget, fill_budget=True)
    assert result.top_ups and all(r["fill"] and not r["missing_before"] for r in result.top_ups)
    assert [r["seed"] for r in result.top_ups] == list(range(1, len(result.top_ups) + 1))
    assert all(r["properties"] == ["equivalence", "truth"] and r["block_sizes"] == [64] for r in result.top_ups)
    assert budget - REPORT_MARGIN_S - MIN_TOP_UP_S - 1 <= result.seconds < budget + 5
    assert all(r["states"] > 0 for r in result.top_ups)
    assert result.exit_code == 0


def test_fill_budget_needs_a_budget(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="^fill-budget: needs a time budget"):
        run_fuzz("oracle", "oracle", profile="dev", out_dir=tmp_path, fill_budget=True)


def test_a_later_round_adds_to_a_property_and_keeps_its_first_failure() -> None:
    """Merging a top-up round (``Collector.merge`` -> ``PropertyStats.absorb``): counts add up, and a failure
    found only in the later round is reported at its place in the whole run, not in the round."""
    from collections import Counter  # noqa: PLC0415

    from properties.collector import PropertyStats  # noqa: PLC0415

    first = PropertyStats("truth", examples=100, seconds=2.0, by_block_size=Counter({16: 60, 64: 40}))
    later = PropertyStats("truth", examples=30, seconds=1.0, failed=True, examples_to_failure=7,
                          seconds_to_failure=0.5, error=None, counterexample={"state": {}},
                          by_block_size=Counter({16: 30}))
    first.absorb(later)
    assert (first.examples, first.seconds, first.failed) == (130, 3.0, True)
    assert first.by_block_size == Counter({16: 90, 64: 40})
    assert (first.examples_to_failure, first.seconds_to_failure) == (107, 2.5)
    assert first.counterexample == {"state": {}}
    again = PropertyStats("truth", examples=5, failed=True, examples_to_failure=1, counterexample={"state": "2nd"})
    first.absorb(again)  # a second failure does not replace the first one's counterexample or place
    assert first.examples_to_failure == 107 and first.counterexample == {"state": {}} and first.examples == 135
