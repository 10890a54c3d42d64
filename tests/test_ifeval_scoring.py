"""Strict and loose scoring, metrics, missing and extra responses, and the sample's expected verdicts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evals.ifeval import data, scoring
from evals.ifeval.checkers import build
from ifeval_support import SAMPLE_EXPECTED, SAMPLE_INPUT, SAMPLE_RESPONSES


def test_loose_variants_follow_the_reference_order() -> None:
    response = "*Intro*\nbody, here\n*Outro*"
    assert scoring.loose_variants(response) == [
        response, "Intro\nbody, here\nOutro",
        "body, here\n*Outro*", "*Intro*\nbody, here", "body, here",
        "body, here\nOutro", "Intro\nbody, here",
    ]  # "without both, without *" equals "without both" and is checked once


def test_loose_accepts_a_variant_strict_rejects() -> None:
    no_comma = build("punctuation:no_comma", {})
    response = "Sure, here it is:\nNo commas in this line"
    assert not scoring.follows_strict(no_comma, response)
    assert scoring.follows_loose(no_comma, scoring.loose_variants(response))


def test_loose_without_stars() -> None:
    quote = build("startend:quotation", {})
    assert scoring.follows_loose(quote, scoring.loose_variants('"**bold** answer"**'))
    assert not scoring.follows_strict(quote, '"**bold** answer"**')


def test_empty_response_follows_nothing() -> None:
    no_comma = build("punctuation:no_comma", {})
    assert not scoring.follows_strict(no_comma, "   ")
    assert not scoring.follows_loose(no_comma, scoring.loose_variants("  \n "))


def test_sample_verdicts_match_the_hand_checked_expectations() -> None:
    prompts = data.load_prompts(SAMPLE_INPUT)
    report = scoring.score(prompts, data.load_responses(SAMPLE_RESPONSES, prompts))
    expected = json.loads(SAMPLE_EXPECTED.read_text(encoding="utf-8"))["verdicts"]
    got = {
        str(d["key"]): {"strict": [i["strict"] for i in d["instructions"]],
                        "loose": [i["loose"] for i in d["instructions"]]}
        for d in report["details"]
    }
    assert got == expected
    ids = {i for p in prompts for i in p.instruction_ids}
    assert len(ids) == 25 and len(prompts) >= 50


def test_metrics_are_percentages_of_prompts_and_instructions(tmp_path: Path) -> None:
    rows = [
        {"key": 1, "prompt": "p1", "instruction_id_list": ["punctuation:no_comma", "startend:quotation"],
         "kwargs": [{}, {}]},
        {"key": 2, "prompt": "p2", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]},
    ]
    prompts_path = tmp_path / "in.jsonl"
    prompts_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    responses_path = tmp_path / "r.jsonl"
    responses_path.write_text(json.dumps({"key": 1, "response": "a, b"}) + "\n"
                              + json.dumps({"prompt": "p2", "response": "fine"}) + "\n")
    prompts = data.load_prompts(prompts_path)
    report = scoring.score(prompts, data.load_responses(responses_path, prompts))
    assert report["metrics"] == {
        "Prompt-level-strict-accuracy": 50.0, "Inst-level-strict-accuracy": 100.0 / 3,
        "Prompt-level-loose-accuracy": 50.0, "Inst-level-loose-accuracy": 100.0 / 3,
    }
    assert report["per_category"]["punctuation"]["strict_accuracy"] == 50.0
    assert report["per_instruction"]["startend:quotation"]["count"] == 1


def test_missing_and_unknown_responses_are_listed_not_fatal(tmp_path: Path) -> None:
    prompts = data.load_prompts(SAMPLE_INPUT)
    lines = SAMPLE_RESPONSES.read_text(encoding="utf-8").splitlines()[1:]  # first prompt left out
    lines.append(json.dumps({"key": 99999, "response": "stray"}))
    lines.append(json.dumps({"prompt": "never asked", "response": "stray"}))
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join(lines) + "\n")
    report = scoring.score(prompts, data.load_responses(path, prompts))
    assert report["missing_responses"] == [prompts[0].key]
    assert [u["line"] for u in report["unknown_responses"]] == [len(lines) - 1, len(lines)]
    first = report["details"][0]
    assert not first["has_response"] and not first["follow_all_instructions_loose"]


def test_report_json_is_byte_identical_across_runs() -> None:
    prompts = data.load_prompts(SAMPLE_INPUT)
    first = scoring.to_json(scoring.score(prompts, data.load_responses(SAMPLE_RESPONSES, prompts)))
    again = scoring.to_json(scoring.score(data.load_prompts(SAMPLE_INPUT),
                                          data.load_responses(SAMPLE_RESPONSES, prompts)))
    assert first == again


@pytest.mark.parametrize("line,rule", [
    ("not json", "not valid JSON"),
    ('{"key": 101}', '"response" must be a string'),
    ('{"response": "x"}', 'needs "key" or "prompt"'),
    ('{"key": "101", "response": "x"}', '"key" must be an integer'),
])
def test_malformed_responses_name_the_line(tmp_path: Path, line: str, rule: str) -> None:
    prompts = data.load_prompts(SAMPLE_INPUT)
    path = tmp_path / "r.jsonl"
    path.write_text('{"key": 102, "response": "ok"}\n' + line + "\n")
    with pytest.raises(data.InputError, match=rule) as info:
        data.load_responses(path, prompts)
    assert "line 2" in str(info.value)


def test_duplicate_response_is_an_error(tmp_path: Path) -> None:
    prompts = data.load_prompts(SAMPLE_INPUT)
    path = tmp_path / "r.jsonl"
    path.write_text('{"key": 102, "response": "a"}\n{"key": 102, "response": "b"}\n')
    with pytest.raises(data.InputError, match="second response for key 102"):
        data.load_responses(path, prompts)
