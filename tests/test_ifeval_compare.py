"""``ifeval compare`` on constructed pairs of runs whose answers are known in advance."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evals.ifeval import comparison as compare
from evals.ifeval.cli import run_ifeval
from ifeval_support import REPO, SAMPLE_INPUT, real_data_path


def _run_folder(folder: Path, data_path: Path, responses: dict[int, str], prompts: dict[int, str]) -> Path:
    """A run folder as ``ifeval run`` leaves it: responses.jsonl and scores.json."""
    folder.mkdir(parents=True)
    lines = [json.dumps({"key": k, "prompt": prompts[k], "response": r, "finish_reason": "stop"}) + "\n"
             for k, r in responses.items()]
    (folder / "responses.jsonl").write_text("".join(lines), encoding="utf-8")
    run_ifeval(folder / "responses.jsonl", data_path, json_out=folder / "scores.json")
    return folder


def _prompts(path: Path) -> dict[int, str]:
    return {json.loads(line)["key"]: json.loads(line)["prompt"] for line in path.read_text().splitlines() if line.strip()}


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "validation.cli", "ifeval", "compare", *args],
                          env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=120)


def test_identical_runs_differ_by_nothing(tmp_path: Path) -> None:
    prompts = _prompts(SAMPLE_INPUT)
    echo = {k: p for k, p in prompts.items()}
    before = _run_folder(tmp_path / "before", SAMPLE_INPUT, echo, prompts)
    after = _run_folder(tmp_path / "after", SAMPLE_INPUT, echo, prompts)
    done = _cli(str(before), str(after), "--expect-identical", "--out", str(tmp_path / "cmp"))
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    for m in result["metrics"].values():
        assert m["difference"] == 0 and m["ci_low"] == 0 and m["ci_high"] == 0
    assert result["metrics"]["Prompt-level-strict-accuracy"]["mcnemar"]["p_value"] == 1.0
    assert result["identical_responses"] == len(prompts) and result["gate"]["passed"]
    assert "| metric | Before | After |" in done.stdout and "gate (margin 1 pt): PASS" in done.stdout
    assert (tmp_path / "cmp" / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "No instruction changed verdict" in (tmp_path / "cmp" / "report.md").read_text()


def test_a_run_that_loses_30_of_541_prompts_fails_the_gate(tmp_path: Path) -> None:
    data_path = real_data_path()
    prompts = _prompts(data_path)
    echo = dict(prompts)
    before = _run_folder(tmp_path / "before", data_path, echo, prompts)
    passing = [d["key"] for d in json.loads((before / "scores.json").read_text())["details"]
               if d["follow_all_instructions_strict"] and d["follow_all_instructions_loose"]]
    lost = sorted(passing)[:30]
    after = _run_folder(tmp_path / "after", data_path, {k: ("" if k in lost else r) for k, r in echo.items()}, prompts)
    done = _cli(str(before), str(after))
    assert done.returncode == 1, done.stdout + done.stderr
    result = json.loads((after / "compare" / "compare.json").read_text())
    strict = result["metrics"]["Prompt-level-strict-accuracy"]
    assert strict["difference"] == pytest.approx(-100 * 30 / 541)
    assert strict["ci_low"] < strict["difference"] < strict["ci_high"] <= 0 and strict["ci_low"] < -1
    assert strict["mcnemar"] == {"gains": 0, "losses": 30, "p_value": pytest.approx(2 * 0.5 ** 30)}
    assert result["identical_responses"] == 511 and not result["gate"]["passed"]
    assert "Prompt-level-strict-accuracy: lower bound" in done.stdout and "FAIL" in done.stdout
    lost_keys = {k for e in result["per_instruction"].values() for k in e["losses_strict"]}
    assert lost_keys == set(lost)
    report = (after / "compare" / "report.md").read_text()
    assert f"{lost[0]} \"" in report and "FAIL" in report
    assert (after / "compare" / "chart.png").stat().st_size > 10_000


def test_expect_identical_fails_on_one_differing_answer_and_lists_it(tmp_path: Path) -> None:
    prompts = _prompts(SAMPLE_INPUT)
    key = sorted(prompts)[3]
    before = _run_folder(tmp_path / "before", SAMPLE_INPUT, dict(prompts), prompts)
    after = _run_folder(tmp_path / "after", SAMPLE_INPUT, {k: p + ("!" if k == key else "") for k, p in prompts.items()},
                        prompts)
    assert _cli(str(before), str(after), "--margin", "100", "--out", str(tmp_path / "a")).returncode == 0
    done = _cli(str(before), str(after), "--margin", "100", "--expect-identical", "--out", str(tmp_path / "b"))
    assert done.returncode == 1
    assert f"differing responses, keys: {key}" in done.stdout
    assert "1 responses differ (expected identical)" in done.stdout
    assert f"- {key} \"" in (tmp_path / "b" / "report.md").read_text()


def test_mcnemar_is_the_exact_binomial_on_discordant_pairs() -> None:
    np = pytest.importorskip("numpy")
    before = np.array([1] * 3 + [0] * 10 + [1] * 20 + [0] * 7)
    after = np.array([0] * 3 + [1] * 10 + [1] * 20 + [0] * 7)
    exact = 2 * sum(math.comb(13, i) for i in range(4)) / 2 ** 13  # P(X <= 3), X ~ Bin(13, 1/2), doubled
    assert compare.mcnemar(before, after) == {"gains": 10, "losses": 3, "p_value": pytest.approx(exact)}


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    prompts = _prompts(SAMPLE_INPUT)
    before = _run_folder(tmp_path / "before", SAMPLE_INPUT, dict(prompts), prompts)
    done = _cli(str(before), str(tmp_path / "nowhere"))
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        f"dsa-validate ifeval: error: RUN_AFTER: {tmp_path / 'nowhere'} is not a folder"]
    fewer = tmp_path / "fewer.jsonl"
    fewer.write_text("".join(line + "\n" for line in SAMPLE_INPUT.read_text().splitlines()[:-2]))
    other = _run_folder(tmp_path / "other", fewer, {k: p for k, p in list(prompts.items())[:-2]}, prompts)
    done = _cli(str(before), str(other))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "the runs scored different prompts: 2 only in RUN_BEFORE" in done.stderr


def test_unanswered_prompts_are_warned_about(tmp_path: Path) -> None:
    prompts = _prompts(SAMPLE_INPUT)
    missing = sorted(prompts)[0]
    before = _run_folder(tmp_path / "before", SAMPLE_INPUT, dict(prompts), prompts)
    after = _run_folder(tmp_path / "after", SAMPLE_INPUT, {k: p for k, p in prompts.items() if k != missing}, prompts)
    done = _cli(str(before), str(after), "--margin", "100")
    assert done.returncode == 0
    assert f"WARNING: after has 1 unanswered prompts, scored as not followed (keys {missing})" in done.stdout
    assert "WARNING: after has 1 unanswered" in (after / "compare" / "report.md").read_text()
