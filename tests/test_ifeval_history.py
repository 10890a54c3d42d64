"""``ifeval history`` on three constructed runs whose answers are known: two identical, one that lost prompts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evals.ifeval import run_history, run_history_report
from evals.ifeval.cli import run_ifeval
from ifeval_support import REPO, SAMPLE_INPUT
from validation.errors import InputError

PNG = b"\x89PNG\r\n\x1a\n"


def _prompts() -> dict[int, str]:
    rows = (json.loads(line) for line in SAMPLE_INPUT.read_text(encoding="utf-8").splitlines() if line.strip())
    return {r["key"]: r["prompt"] for r in rows}


def _run(folder: Path, started: str, responses: dict[int, str]) -> Path:
    """A run folder as ``ifeval run`` leaves it: responses.jsonl, scores.json and run.json's start."""
    prompts = _prompts()
    folder.mkdir(parents=True)
    (folder / "responses.jsonl").write_text("".join(
        json.dumps({"key": k, "prompt": prompts[k], "response": r, "finish_reason": "stop"}) + "\n"
        for k, r in responses.items()), encoding="utf-8")
    run_ifeval(folder / "responses.jsonl", SAMPLE_INPUT, json_out=folder / "scores.json")
    (folder / "run.json").write_text(json.dumps({"started": started, "runs": []}), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Names sort against time: 'c-monday' is the oldest, 'a-wednesday' the newest (the one that dropped)."""
    root = tmp_path_factory.mktemp("runs") / "nightly"
    echo = _prompts()
    monday = _run(root / "c-monday", "2026-12-01T02:00:00+00:00", echo)
    followed = [d["key"] for d in json.loads((monday / "scores.json").read_text())["details"]
                if d["follow_all_instructions_strict"]]
    lost = set(sorted(followed)[:12])
    (root / "d-killed").mkdir()  # a run killed before it scored: answers, no scores.json
    (root / "d-killed" / "responses.jsonl").write_text('{"key": 1000, "response": "x"}\n', encoding="utf-8")
    return {"root": root, "monday": monday,
            "tuesday": _run(root / "b-tuesday", "2026-12-02T02:00:00+00:00", echo),
            "wednesday": _run(root / "a-wednesday", "2026-12-03T02:00:00+00:00",
                              {k: ("" if k in lost else r) for k, r in echo.items()}),
            "lost": lost}  # type: ignore[dict-item]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "validation.cli", "ifeval", "history", *args],
                          env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=120)


def test_a_folder_of_runs_in_time_order_with_the_drop_against_the_reference(runs: dict[str, Path],
                                                                              tmp_path: Path) -> None:
    done = _cli(str(runs["root"]), "--out", str(tmp_path / "h"))
    assert done.returncode == 1, done.stdout + done.stderr
    result = json.loads((tmp_path / "h" / "history.json").read_text())
    assert [r["name"] for r in result["runs"]] == ["c-monday", "b-tuesday", "a-wednesday"]  # by time, not name
    monday, tuesday, wednesday = result["runs"]
    assert monday["reference"] and result["reference"] == str(runs["monday"])
    strict = "Prompt-level-strict-accuracy"
    assert monday["metrics"][strict] == tuesday["metrics"][strict]
    value = monday["metrics"][strict]
    assert value["ci_low"] < value["value"] < value["ci_high"]
    drop = -100 * len(runs["lost"]) / 61  # type: ignore[arg-type]
    assert wednesday["metrics"][strict]["value"] == pytest.approx(value["value"] + drop)
    # tuesday equals both monday (previous, reference): nothing differs
    for label in ("vs_previous", "vs_reference"):
        same = tuesday[label]
        assert same["identical_responses"] == 61 and same["gate"]["passed"]
        assert all(m["difference"] == 0 and m["ci_low"] == 0 == m["ci_high"] for m in same["metrics"].values())
    # wednesday lost 12 prompts against tuesday and against monday, paired McNemar included
    for label in ("vs_previous", "vs_reference"):
        lost = wednesday[label]
        assert lost["identical_responses"] == 49 and not lost["gate"]["passed"]
        assert lost["metrics"][strict]["difference"] == pytest.approx(drop)
        assert lost["metrics"][strict]["mcnemar"] == {"gains": 0, "losses": 12, "p_value": pytest.approx(2 * 0.5 ** 12)}
    assert "vs_previous" not in monday and "vs_reference" not in monday
    assert result["verdict"]["dropped"] and "verdict: DROP: a-wednesday" in done.stdout
    assert result["skipped"] == [str(runs["root"] / "d-killed")] and "skipped: " in done.stdout
    table = (tmp_path / "h" / "history.md").read_text()
    assert "| 1 | c-monday (reference) |" in table and "| a-wednesday | reference | 49/61 |" in table
    assert "| b-tuesday | previous | 61/61 | +0.00 [+0.00, +0.00]" in table and "DROP (lower bound < -1)" in table
    assert (tmp_path / "h" / "history.png").read_bytes()[:8] == PNG


def test_identical_runs_hold_and_a_pinned_reference_judges_only_the_newest(runs: dict[str, Path],
                                                                         tmp_path: Path) -> None:
    done = _cli(str(runs["tuesday"]), str(runs["monday"]), "--out", str(tmp_path / "same"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verdict: held: b-tuesday did not drop" in done.stdout
    # the dropped run in the middle, newest equal to the reference: the newest held
    partial = dict(_prompts())
    details = json.loads((runs["monday"] / "scores.json").read_text())["details"]
    unanswered = next(d["key"] for d in details if not any(i["strict"] or i["loose"] for i in d["instructions"]))
    del partial[unanswered]  # a night that left unanswered one prompt the echo failed anyway: no drop
    late = _run(tmp_path / "thursday", "2026-12-04T02:00:00+00:00", partial)
    result = run_history.history([runs["root"], late], reference=runs["tuesday"])
    assert result["runs"][-1]["unanswered"] == [unanswered] and not result["runs"][0]["unanswered"]
    assert "WARNING: thursday has 1 unanswered prompts" in "\n".join(run_history_report.skipped_lines(result))
    assert [r["name"] for r in result["runs"]][-1] == "thursday" and not result["verdict"]["dropped"]
    assert result["runs"][1]["reference"] and result["reference_pinned"]
    assert not result["runs"][2]["vs_reference"]["gate"]["passed"]  # wednesday still shows its drop
    assert result["runs"][3]["vs_previous"]["metrics"]["Prompt-level-strict-accuracy"]["difference"] > 0
    # the newest run is the reference itself: nothing to drop against
    pinned = run_history.history([runs["monday"], runs["wednesday"]], reference=runs["wednesday"])
    assert not pinned["verdict"]["dropped"] and pinned["verdict"]["note"]


def test_bad_input_is_one_line_and_exit_2(runs: dict[str, Path], tmp_path: Path) -> None:
    done = _cli(str(tmp_path / "nowhere"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"dsa-validate ifeval: error: RUN_DIR: {tmp_path / 'nowhere'} is not a folder"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no scores.json and no run folders"):
        run_history.history([tmp_path / "empty"])
    short = _run(tmp_path / "short", "2026-12-05T02:00:00+00:00", dict(list(_prompts().items())[:5]))
    scores = json.loads((short / "scores.json").read_text())
    scores["details"] = scores["details"][:5]
    (short / "scores.json").write_text(json.dumps(scores))
    with pytest.raises(InputError, match="the runs scored different prompts"):
        run_history.history([runs["monday"], short])
    (short / "run.json").write_text("{}")
    with pytest.raises(InputError, match="'started' is missing"):
        run_history.history([short])
