"""Prompt loading (jsonl and parquet through ``datasets``), schema errors by line, and the CLI contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import validation.cli
from evals.ifeval import data
from ifeval_support import SAMPLE_INPUT, SAMPLE_RESPONSES
from validation.errors import InputError


def _write(path: Path, rows: list[object]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


GOOD = {"key": 1, "prompt": "p", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}


@pytest.mark.parametrize("bad,rule", [
    ("{oops", "not valid JSON"),
    ({**GOOD, "key": "1"}, "key: must be an integer"),
    ({**GOOD, "instruction_id_list": ["no:such"]}, "unknown instruction id"),
    ({**GOOD, "kwargs": []}, "kwargs: must be a list of 1"),
    ({**GOOD, "instruction_id_list": ["keywords:frequency"], "kwargs": [{"keyword": "a"}]}, "missing argument"),
])
def test_schema_errors_name_the_line(tmp_path: Path, bad: object, rule: str) -> None:
    path = _write(tmp_path / "in.jsonl", [GOOD | {"key": 0}, bad])
    with pytest.raises(InputError, match=rule) as info:
        data.load_prompts(path)
    assert "line 2" in str(info.value)


def test_none_kwargs_from_parquet_are_dropped(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rows = [json.loads(line) for line in SAMPLE_INPUT.read_text().splitlines()]
    path = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)  # unions kwargs keys, filling None
    from_parquet = data.load_prompts(path)
    assert [p.kwargs for p in from_parquet] == [p.kwargs for p in data.load_prompts(SAMPLE_INPUT)]


def test_env_variable_supplies_the_data(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(data.DATA_ENV, str(SAMPLE_INPUT))
    assert data.resolve_source(None) == str(SAMPLE_INPUT)


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> object:
    """``validation.cli.main``: an ``ifeval`` command loads only this job's subcommands."""
    return validation.cli.main


def test_cli_scores_and_writes_identical_json_twice(cli, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outs = []
    for name in ("a", "b"):
        out, details = tmp_path / f"{name}.json", tmp_path / f"{name}.details.jsonl"
        assert cli(["ifeval", "score", "--responses", str(SAMPLE_RESPONSES), "--data", str(SAMPLE_INPUT),
                    "--json", str(out), "--details", str(details)]) == 0
        outs.append(out.read_bytes())
        assert len(details.read_text().splitlines()) == 61
    assert outs[0] == outs[1]
    printed = capsys.readouterr().out
    assert "Prompt-level-strict-accuracy" in printed and "Inst-level-loose-accuracy" in printed
    report = json.loads(outs[0])
    assert set(report) >= {"metrics", "per_instruction", "per_category", "details"}


def test_cli_malformed_input_is_one_line_exit_2(cli, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = _write(tmp_path / "r.jsonl", ["{not json"])
    assert cli(["ifeval", "score", "--responses", str(bad), "--data", str(SAMPLE_INPUT)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "line 1" in err and "Traceback" not in err


def test_cli_without_any_data_says_how_to_get_it(cli, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv(data.DATA_ENV, raising=False)
    monkeypatch.setattr(data, "_load_hub", lambda: (_ for _ in ()).throw(InputError("--data", data.HOW_TO_GET)))
    assert cli(["ifeval", "score", "--responses", str(SAMPLE_RESPONSES)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--data" in err and data.DATA_ENV in err


def test_cli_missing_file_is_exit_2(cli, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["ifeval", "score", "--responses", "/nonexistent.jsonl", "--data", str(SAMPLE_INPUT)]) == 2
    assert "is not a file" in capsys.readouterr().err


def test_cli_help_has_an_example(cli, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli(["ifeval", "score", "--help"])
    assert "dsa-validate ifeval score --responses" in capsys.readouterr().out


def test_long_unmatched_lists_are_summarised_with_where_the_whole_list_is(
        cli, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    responses = _write(tmp_path / "many.jsonl", [{"key": 10**6 + i, "response": "x"} for i in range(5000)])
    assert cli(["ifeval", "score", "--responses", str(responses), "--data", str(SAMPLE_INPUT)]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("responses matching no prompt"))
    assert line.startswith("responses matching no prompt, lines: 5000, first 10: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, ...")
    assert len(out) < 2000, "the terminal gets a summary, not every line number"
    full = Path(line.rsplit("; all of them in ", 1)[1])
    assert json.loads(full.read_text())["unknown_lines"] == list(range(1, 5001))
