"""Each IFEval checker: a following and a breaking response, and every relation at its boundary.

The expectations restate the reference implementation's behaviour (google-research
``instruction_following_eval``) case by case, so a drift from its verdicts fails here first.
"""

from __future__ import annotations

import pytest

from evals.ifeval.checkers import REGISTRY, build
from validation.errors import InputError


def check(instruction_id: str, response: str, **kwargs: object) -> bool:
    return build(instruction_id, kwargs).check(response)


def test_registry_has_the_25_ids() -> None:
    assert len(REGISTRY) == 25
    for instruction_id, cls in REGISTRY.items():
        assert cls.ID == instruction_id


@pytest.mark.parametrize("count,relation,expected", [
    (2, "at least", False), (3, "at least", True), (4, "at least", True),
    (2, "less than", True), (3, "less than", False), (4, "less than", False),
])
def test_keyword_frequency_boundary(count: int, relation: str, expected: bool) -> None:
    response = " ".join(["Tea"] * count) + " and coffee"
    assert check("keywords:frequency", response, keyword="tea", frequency=3, relation=relation) is expected


def test_keyword_existence_is_case_insensitive_regex() -> None:
    assert check("keywords:existence", "A Harbor and a lantern.", keywords=["lantern", "harbor"])
    assert not check("keywords:existence", "A harbor only.", keywords=["lantern", "harbor"])


def test_forbidden_words_whole_words_only() -> None:
    assert check("keywords:forbidden_words", "freedom is freely given", forbidden_words=["free"])
    assert not check("keywords:forbidden_words", "It is FREE.", forbidden_words=["free"])


@pytest.mark.parametrize("count,relation,expected", [
    (3, "at least", False), (4, "at least", True), (5, "at least", True),
    (3, "less than", True), (4, "less than", False), (5, "less than", False),
])
def test_letter_frequency_boundary(count: int, relation: str, expected: bool) -> None:
    response = "Z" * (count - 1) + "z" + " abc"
    assert check("keywords:letter_frequency", response, letter="z", let_frequency=4,
                 let_relation=relation) is expected


@pytest.mark.parametrize("letter", ["#", "!"])
def test_letter_frequency_counts_non_letters_literally(letter: str) -> None:
    """Deliberate difference from the reference, which replaced '#'/'!' by a random letter."""
    assert check("keywords:letter_frequency", f"a{letter}b{letter}", letter=letter, let_frequency=2,
                 let_relation="at least")
    assert not check("keywords:letter_frequency", f"a{letter}b", letter=letter, let_frequency=2,
                     let_relation="at least")


def test_response_language() -> None:
    german = "Der Herbst ist meine liebste Jahreszeit, weil die Blätter bunt werden und die Luft klar ist."
    assert check("language:response_language", german, language="de")
    assert not check("language:response_language", german, language="en")
    assert check("language:response_language", "12345 !!!", language="de")  # undetectable: followed


@pytest.mark.parametrize("count,relation,expected", [
    (2, "at least", False), (3, "at least", True), (4, "at least", True),
    (2, "less than", True), (3, "less than", False), (4, "less than", False),
])
def test_number_sentences_boundary(count: int, relation: str, expected: bool) -> None:
    response = " ".join(f"This is sentence number {i}." for i in range(count))
    assert check("length_constraints:number_sentences", response, num_sentences=3,
                 relation=relation) is expected


@pytest.mark.parametrize("count,relation,expected", [
    (4, "at least", False), (5, "at least", True), (6, "at least", True),
    (4, "less than", True), (5, "less than", False), (6, "less than", False),
])
def test_number_words_boundary(count: int, relation: str, expected: bool) -> None:
    response = " ".join(["word"] * count)
    assert check("length_constraints:number_words", response, num_words=5, relation=relation) is expected


def test_number_words_counts_word_characters() -> None:
    assert build("length_constraints:number_words", {"num_words": 4, "relation": "at least"}).check(
        "it's well-known")  # it / s / well / known


@pytest.mark.parametrize("count,expected", [(2, False), (3, True), (4, False)])
def test_number_paragraphs_exact(count: int, expected: bool) -> None:
    response = "\n***\n".join(f"Paragraph {i}." for i in range(count))
    assert check("length_constraints:number_paragraphs", response, num_paragraphs=3) is expected


def test_number_paragraphs_empty_middle_paragraph_fails_edges_do_not() -> None:
    assert check("length_constraints:number_paragraphs", "***\nA\n***\nB\n***", num_paragraphs=2)
    assert not check("length_constraints:number_paragraphs", "A\n***\n***\nB", num_paragraphs=2)


def test_nth_paragraph_first_word() -> None:
    args = {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "Finally"}
    assert check("length_constraints:nth_paragraph_first_word", "One.\n\n\"Finally, two.", **args)
    assert not check("length_constraints:nth_paragraph_first_word", "One.\n\nAt last two.", **args)
    assert not check("length_constraints:nth_paragraph_first_word", "One.\n\nFinally.\n\nThree.", **args)
    assert not check("length_constraints:nth_paragraph_first_word", "Finally one.", **args)


@pytest.mark.parametrize("count,expected", [(1, False), (2, True), (3, True)])
def test_placeholders_at_least(count: int, expected: bool) -> None:
    response = " ".join(f"[slot{i}]" for i in range(count))
    assert check("detectable_content:number_placeholders", response, num_placeholders=2) is expected


def test_postscript_markers() -> None:
    assert check("detectable_content:postscript", "Hi.\np.s. bye", postscript_marker="P.S.")
    assert check("detectable_content:postscript", "Hi.\nP. P. S bye", postscript_marker="P.P.S")
    assert not check("detectable_content:postscript", "Hi.\nP.S. bye", postscript_marker="P.P.S")
    assert check("detectable_content:postscript", "Hi.\nNote: bye", postscript_marker="Note:")


@pytest.mark.parametrize("count,expected", [(2, False), (3, True), (4, False)])
def test_bullet_lists_exact(count: int, expected: bool) -> None:
    response = "Intro\n" + "\n".join(("* " if i % 2 else "- ") + f"item {i}" for i in range(count))
    assert check("detectable_format:number_bullet_lists", response, num_bullets=3) is expected


def test_bullet_lists_ignore_bold_lines() -> None:
    assert check("detectable_format:number_bullet_lists", "**Bold**\n* one", num_bullets=1)


def test_constrained_response() -> None:
    assert check("detectable_format:constrained_response", "  My answer is no.  ")
    assert not check("detectable_format:constrained_response", "No.")


@pytest.mark.parametrize("response,expected", [
    ("*one*", False), ("*one* and *two*", True), ("**one**", False), ("**one** **two**", True),
    ("** **", False), ("*a* **b** *c*", True),
])
def test_highlighted_sections(response: str, expected: bool) -> None:
    assert check("detectable_format:number_highlighted_sections", response, num_highlights=2) is expected


@pytest.mark.parametrize("count,expected", [(1, False), (2, True), (3, True)])
def test_multiple_sections_at_least(count: int, expected: bool) -> None:
    response = "\n".join(f"SECTION {i + 1}\ntext" for i in range(count))
    assert check("detectable_format:multiple_sections", response, section_spliter="SECTION",
                 num_sections=2) is expected


def test_json_format_with_and_without_fences() -> None:
    assert check("detectable_format:json_format", '```JSON\n{"a": 1}\n```')
    assert check("detectable_format:json_format", "[1, 2]")
    assert not check("detectable_format:json_format", 'Result: {"a": 1}')


def test_title() -> None:
    assert check("detectable_format:title", "<<My Title>>\nbody")
    assert not check("detectable_format:title", "<< >>\nbody")
    assert not check("detectable_format:title", "<<split\ntitle>>")


def test_two_responses() -> None:
    assert check("combination:two_responses", "one\n******\ntwo")
    assert check("combination:two_responses", "******one******two******")
    assert not check("combination:two_responses", "one\n******\none")
    assert not check("combination:two_responses", "one\n******\n******\ntwo")
    assert not check("combination:two_responses", "one******two******three")


def test_repeat_prompt() -> None:
    args = {"prompt_to_repeat": "Say hello."}
    assert check("combination:repeat_prompt", "  say HELLO. Hello!", **args)
    assert not check("combination:repeat_prompt", "Hello! Say hello.", **args)


def test_end_checker_strips_quotes_and_case() -> None:
    args = {"end_phrase": "Any other questions?"}
    assert check("startend:end_checker", '"Done. any other questions?"\n', **args)
    assert not check("startend:end_checker", "Any other questions? Done.", **args)


def test_quotation() -> None:
    assert check("startend:quotation", ' "wrapped" ')
    assert not check("startend:quotation", '"')
    assert not check("startend:quotation", 'say "this"')


@pytest.mark.parametrize("count,relation,expected", [
    (1, "at least", False), (2, "at least", True), (3, "at least", True),
    (1, "less than", True), (2, "less than", False), (3, "less than", False),
])
def test_capital_word_frequency_boundary(count: int, relation: str, expected: bool) -> None:
    response = " ".join(["LOUD"] * count) + " quiet words here."
    assert check("change_case:capital_word_frequency", response, capital_frequency=2,
                 capital_relation=relation) is expected


def test_english_capital_and_lowercase() -> None:
    upper = "THE THUNDER ROLLED ACROSS THE VALLEY AND THE RAIN FELL IN HEAVY SHEETS ALL NIGHT."
    assert check("change_case:english_capital", upper)
    assert not check("change_case:english_capital", upper.capitalize())
    assert check("change_case:english_lowercase", upper.lower())
    assert not check("change_case:english_lowercase", upper)
    assert not check("change_case:english_lowercase", "der herbst ist meine liebste jahreszeit und die luft ist klar.")


def test_no_comma() -> None:
    assert check("punctuation:no_comma", "No commas here.")
    assert not check("punctuation:no_comma", "One, two.")


@pytest.mark.parametrize("instruction_id,kwargs,rule", [
    ("keywords:frequency", {"keyword": "a", "frequency": 2, "relation": "at most"}, "relation"),
    ("keywords:frequency", {"keyword": "a", "frequency": 2}, "missing"),
    ("keywords:letter_frequency", {"letter": "ab", "let_frequency": 2, "let_relation": "at least"}, "one character"),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 2, "nth_paragraph": 3, "first_word": "a"}, "exceeds"),
    ("punctuation:no_comma", {"extra": 1}, "unexpected"),
    ("keywords:existence", {"keywords": ["("]}, "regex"),
    ("no:such_id", {}, "unknown instruction"),
])
def test_bad_arguments_are_input_errors(instruction_id: str, kwargs: dict[str, object], rule: str) -> None:
    with pytest.raises(InputError, match=rule):
        build(instruction_id, kwargs)


def test_none_valued_kwargs_are_dropped() -> None:
    checker = build("punctuation:no_comma", {"num_words": None, "relation": None})
    assert checker.arguments() == {}
    assert checker.describe()
