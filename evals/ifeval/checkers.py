"""One checker per IFEval instruction id, with the reference implementation's verdicts.

Each class takes the instruction's arguments as the data gives them (None-valued keys already dropped),
validates them once, and answers ``check(response) -> bool`` exactly as google-research's
``instruction_following_eval`` does, regexes and comparisons included. Unlike the reference, no
argument is ever filled in at random: a missing or malformed argument is an ``InputError``, and the
letter of ``keywords:letter_frequency`` is counted as given even when it is not a-z (``#``, ``!``),
where the reference swapped in a random letter. ``REGISTRY`` maps each id to its class.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, ClassVar

from evals.ifeval import language, text
from validation.errors import InputError

LESS_THAN, AT_LEAST = "less than", "at least"
RELATIONS = (LESS_THAN, AT_LEAST)
CONSTRAINED_OPTIONS = ("My answer is yes.", "My answer is no.", "My answer is maybe.")
# The reference's fixed patterns, compiled once (same flags, so the same matches)
_DIVIDER = re.compile(r"\s?\*\*\*\s?")
_PLACEHOLDER = re.compile(r"\[.*?\]")
_STAR_BULLET = re.compile(r"^\s*\*[^\*].*$", re.MULTILINE)
_DASH_BULLET = re.compile(r"^\s*-.*$", re.MULTILINE)
_SINGLE_HIGHLIGHT = re.compile(r"\*[^\n\*]*\*")
_DOUBLE_HIGHLIGHT = re.compile(r"\*\*[^\n\*]*\*\*")
_TITLE = re.compile(r"<<[^\n]+>>")


def _compare(count: int, relation: str, threshold: int) -> bool:
    """``less than`` is ``<``; ``at least`` (the only other accepted relation) is ``>=``."""
    return count < threshold if relation == LESS_THAN else count >= threshold


class Checker:
    """An instruction with its arguments; subclasses declare ``ARGS`` and implement ``check``."""

    ID: ClassVar[str] = ""
    ARGS: ClassVar[tuple[str, ...]] = ()
    USES_LANGUAGE: ClassVar[bool] = False  # whether ``check`` asks for ``language_queries``' languages

    def __init__(self, kwargs: Mapping[str, Any] | None = None) -> None:
        given = {k: v for k, v in (kwargs or {}).items() if v is not None}
        unknown = sorted(set(given) - set(self.ARGS))
        if unknown:
            raise InputError(f"kwargs of {self.ID}", f"unexpected argument(s) {', '.join(unknown)}")
        missing = [k for k in self.ARGS if k not in given]
        if missing:
            raise InputError(f"kwargs of {self.ID}", f"missing argument(s) {', '.join(missing)}")
        self._args = given
        self.setup(given)

    def setup(self, args: Mapping[str, Any]) -> None:
        """Validate and normalise the arguments (nothing to do for argument-free instructions)."""

    def arguments(self) -> dict[str, Any]:
        """The arguments as given, None-valued ones dropped."""
        return dict(self._args)

    def describe(self) -> str:
        """What the instruction asks of a response, in one line."""
        raise NotImplementedError

    def check(self, response: str) -> bool:
        """Whether ``response`` follows the instruction (emptiness is the scorer's concern)."""
        raise NotImplementedError

    def language_queries(self, response: str) -> tuple[str, ...]:
        """The texts whose language ``check(response)`` asks for, so the scorer can detect them in bulk."""
        return ()

    # argument helpers -------------------------------------------------------------------------
    def _int(self, args: Mapping[str, Any], name: str, minimum: int = 0) -> int:
        value = args[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise InputError(f"kwargs of {self.ID}", f"{name} must be an integer >= {minimum}, got {value!r}")
        return value

    def _str(self, args: Mapping[str, Any], name: str) -> str:
        value = args[name]
        if not isinstance(value, str) or not value.strip():
            raise InputError(f"kwargs of {self.ID}", f"{name} must be a non-empty string, got {value!r}")
        return value

    def _relation(self, args: Mapping[str, Any], name: str) -> str:
        value = args[name]
        if value not in RELATIONS:
            raise InputError(f"kwargs of {self.ID}", f"{name} must be one of {RELATIONS}, got {value!r}")
        return str(value)

    def _pattern(self, name: str, pattern: str) -> str:
        """Arguments the reference uses as regular expressions must compile (else it would crash)."""
        try:
            re.compile(pattern)
        except re.error as exc:
            raise InputError(f"kwargs of {self.ID}", f"{name} {pattern!r} is not a valid regex: {exc}") from None
        return pattern

    def _words(self, args: Mapping[str, Any], name: str) -> list[str]:
        value = args[name]
        if not isinstance(value, (list, tuple)) or not value or not all(isinstance(w, str) for w in value):
            raise InputError(f"kwargs of {self.ID}", f"{name} must be a non-empty list of strings")
        return list(value)


class KeywordExistence(Checker):
    ID = "keywords:existence"
    ARGS = ("keywords",)

    def setup(self, args: Mapping[str, Any]) -> None:
        self.keywords = sorted(self._pattern("keywords", k) for k in self._words(args, "keywords"))
        self._compiled = [re.compile(k, re.IGNORECASE) for k in self.keywords]

    def describe(self) -> str:
        return f"Mention each of {self.keywords}."

    def check(self, response: str) -> bool:
        # The reference treats each keyword as a regular expression, matched case-insensitively.
        return all(k.search(response) for k in self._compiled)


class KeywordFrequency(Checker):
    ID = "keywords:frequency"
    ARGS = ("keyword", "frequency", "relation")

    def setup(self, args: Mapping[str, Any]) -> None:
        self.keyword = self._pattern("keyword", self._str(args, "keyword").strip())
        self.frequency = self._int(args, "frequency")
        self.relation = self._relation(args, "relation")
        self._compiled = re.compile(self.keyword, re.IGNORECASE)

    def describe(self) -> str:
        return f"Use the word {self.keyword!r} {self.relation} {self.frequency} times."

    def check(self, response: str) -> bool:
        found = len(self._compiled.findall(response))
        return _compare(found, self.relation, self.frequency)


class ForbiddenWords(Checker):
    ID = "keywords:forbidden_words"
    ARGS = ("forbidden_words",)

    def setup(self, args: Mapping[str, Any]) -> None:
        self.words = sorted({self._pattern("forbidden_words", w) for w in self._words(args, "forbidden_words")})
        self._compiled = [re.compile(r"\b" + w + r"\b", re.IGNORECASE) for w in self.words]

    def describe(self) -> str:
        return f"Avoid the words {self.words}."

    def check(self, response: str) -> bool:
        return not any(w.search(response) for w in self._compiled)


class LetterFrequency(Checker):
    ID = "keywords:letter_frequency"
    ARGS = ("letter", "let_frequency", "let_relation")

    def setup(self, args: Mapping[str, Any]) -> None:
        letter = args["letter"]
        if not isinstance(letter, str) or len(letter.strip()) != 1:
            raise InputError(f"kwargs of {self.ID}", f"letter must be one character, got {letter!r}")
        # Deliberate difference: any character is counted as given; the reference replaced a
        # non a-z letter (keys 1122 '#', 1129 '!') with a random one.
        self.letter = letter.strip().lower()
        self.frequency = self._int(args, "let_frequency")
        self.relation = self._relation(args, "let_relation")

    def describe(self) -> str:
        return f"Use the letter {self.letter!r} {self.relation} {self.frequency} times."

    def check(self, response: str) -> bool:
        return _compare(response.lower().count(self.letter), self.relation, self.frequency)


class ResponseLanguage(Checker):
    ID = "language:response_language"
    USES_LANGUAGE = True
    ARGS = ("language",)

    def setup(self, args: Mapping[str, Any]) -> None:
        self.language = self._str(args, "language")

    def describe(self) -> str:
        return f"Answer entirely in the language {self.language!r}."

    def check(self, response: str) -> bool:
        detected = language.detector().language_of(response)
        return detected is None or detected == self.language

    def language_queries(self, response: str) -> tuple[str, ...]:
        return (response,)


class NumberOfSentences(Checker):
    ID = "length_constraints:number_sentences"
    ARGS = ("num_sentences", "relation")

    def setup(self, args: Mapping[str, Any]) -> None:
        self.threshold = self._int(args, "num_sentences")
        self.relation = self._relation(args, "relation")

    def describe(self) -> str:
        return f"Write {self.relation} {self.threshold} sentences."

    def check(self, response: str) -> bool:
        if text.max_sentences(response) < self.threshold:  # decided without splitting
            return self.relation == LESS_THAN
        return _compare(text.count_sentences(response), self.relation, self.threshold)


class NumberOfParagraphs(Checker):
    ID = "length_constraints:number_paragraphs"
    ARGS = ("num_paragraphs",)

    def setup(self, args: Mapping[str, Any]) -> None:
        self.count = self._int(args, "num_paragraphs")

    def describe(self) -> str:
        return f"Write exactly {self.count} paragraphs separated by the markdown divider ***."

    def check(self, response: str) -> bool:
        parts = _DIVIDER.split(response)
        found = len(parts)
        for index, part in enumerate(parts):
            if not part.strip():
                if index in (0, len(parts) - 1):
                    found -= 1
                else:
                    return False  # an empty paragraph between two dividers
        return found == self.count


class NumberOfWords(Checker):
    ID = "length_constraints:number_words"
    ARGS = ("num_words", "relation")

    def setup(self, args: Mapping[str, Any]) -> None:
        self.threshold = self._int(args, "num_words")
        self.relation = self._relation(args, "relation")

    def describe(self) -> str:
        return f"Answer with {self.relation} {self.threshold} words."

    def check(self, response: str) -> bool:
        return _compare(text.count_words(response), self.relation, self.threshold)


class NthParagraphFirstWord(Checker):
    ID = "length_constraints:nth_paragraph_first_word"
    ARGS = ("num_paragraphs", "nth_paragraph", "first_word")
    _PUNCTUATION = frozenset(".,?!'\"")

    def setup(self, args: Mapping[str, Any]) -> None:
        self.count = self._int(args, "num_paragraphs", minimum=1)
        self.nth = self._int(args, "nth_paragraph", minimum=1)
        if self.nth > self.count:
            raise InputError(f"kwargs of {self.ID}", f"nth_paragraph {self.nth} exceeds num_paragraphs {self.count}")
        self.first_word = self._str(args, "first_word").lower()

    def describe(self) -> str:
        return (f"Write {self.count} paragraphs separated by blank lines; "
                f"paragraph {self.nth} starts with {self.first_word!r}.")

    def check(self, response: str) -> bool:
        parts = response.split("\n\n")  # re.split on a literal: the same pieces
        found = sum(1 for p in parts if p.strip())
        if self.nth > found:
            return False
        # The reference indexes the raw split, empty pieces included.
        paragraph = parts[self.nth - 1].strip()
        if not paragraph:
            return False
        word = paragraph.split()[0].strip().lstrip("'").lstrip('"')
        first = ""
        for char in word:
            if char in self._PUNCTUATION:
                break
            first += char.lower()
        return found == self.count and first == self.first_word


class Placeholders(Checker):
    ID = "detectable_content:number_placeholders"
    ARGS = ("num_placeholders",)

    def setup(self, args: Mapping[str, Any]) -> None:
        self.count = self._int(args, "num_placeholders")

    def describe(self) -> str:
        return f"Include at least {self.count} placeholders in square brackets, like [name]."

    def check(self, response: str) -> bool:
        return len(_PLACEHOLDER.findall(response)) >= self.count


class Postscript(Checker):
    ID = "detectable_content:postscript"
    ARGS = ("postscript_marker",)

    def setup(self, args: Mapping[str, Any]) -> None:
        self.marker = self._str(args, "postscript_marker").strip()
        if self.marker == "P.P.S":
            self.regex = r"\s*p\.\s?p\.\s?s.*$"
        elif self.marker == "P.S.":
            self.regex = r"\s*p\.\s?s\..*$"
        else:  # any other marker is a regular expression, lower-cased, as in the reference
            self.regex = self._pattern("postscript_marker", r"\s*" + self.marker.lower() + r".*$")
        self._compiled = re.compile(self.regex, re.MULTILINE)

    def describe(self) -> str:
        return f"End with a postscript starting {self.marker!r}."

    def check(self, response: str) -> bool:
        return bool(self._compiled.findall(response.lower()))


class BulletLists(Checker):
    ID = "detectable_format:number_bullet_lists"
    ARGS = ("num_bullets",)

    def setup(self, args: Mapping[str, Any]) -> None:
        self.count = self._int(args, "num_bullets")

    def describe(self) -> str:
        return f"Use exactly {self.count} markdown bullet points."

    def check(self, response: str) -> bool:
        stars = _STAR_BULLET.findall(response)
        dashes = _DASH_BULLET.findall(response)
        return len(stars) + len(dashes) == self.count


class ConstrainedResponse(Checker):
    ID = "detectable_format:constrained_response"

    def describe(self) -> str:
        return f"Answer with one of {CONSTRAINED_OPTIONS}."

    def check(self, response: str) -> bool:
        stripped = response.strip()
        return any(option in stripped for option in CONSTRAINED_OPTIONS)


class HighlightedSections(Checker):
    ID = "detectable_format:number_highlighted_sections"
    ARGS = ("num_highlights",)

    def setup(self, args: Mapping[str, Any]) -> None:
        self.count = self._int(args, "num_highlights")

    def describe(self) -> str:
        return f"Highlight at least {self.count} sections with markdown, *like this*."

    def check(self, response: str) -> bool:
        # Single- and double-starred spans are both counted, as the reference does.
        single = sum(1 for h in _SINGLE_HIGHLIGHT.findall(response) if h.strip("*").strip())
        double = sum(1 for h in _DOUBLE_HIGHLIGHT.findall(response)
                     if h.removeprefix("**").removesuffix("**").strip())
        return single + double >= self.count


class MultipleSections(Checker):
    ID = "detectable_format:multiple_sections"
    ARGS = ("section_spliter", "num_sections")

    def setup(self, args: Mapping[str, Any]) -> None:
        self.splitter = self._pattern("section_spliter", self._str(args, "section_spliter").strip())
        self.count = self._int(args, "num_sections")
        self._compiled = re.compile(r"\s?" + self.splitter + r"\s?\d+\s?")

    def describe(self) -> str:
        return f"Write {self.count} sections, each starting '{self.splitter} X'."

    def check(self, response: str) -> bool:
        pieces = self._compiled.split(response)
        return len(pieces) - 1 >= self.count


class JsonFormat(Checker):
    ID = "detectable_format:json_format"

    def describe(self) -> str:
        return "Wrap the whole output in JSON (markdown fences allowed)."

    def check(self, response: str) -> bool:
        body = response.strip()
        for fence in ("```json", "```Json", "```JSON", "```"):
            body = body.removeprefix(fence)
        body = body.removesuffix("```").strip()
        try:
            json.loads(body)
        except ValueError:
            return False
        return True


class Title(Checker):
    ID = "detectable_format:title"

    def describe(self) -> str:
        return "Include a title in double angular brackets, like <<title>>."

    def check(self, response: str) -> bool:
        return any(t.lstrip("<").rstrip(">").strip() for t in _TITLE.findall(response))


class TwoResponses(Checker):
    ID = "combination:two_responses"

    def describe(self) -> str:
        return "Give two different responses separated by ******."

    def check(self, response: str) -> bool:
        parts = response.split("******")
        kept = []
        for index, part in enumerate(parts):
            if part.strip():
                kept.append(part)
            elif index not in (0, len(parts) - 1):
                return False
        return len(kept) == 2 and kept[0].strip() != kept[1].strip()


class RepeatPrompt(Checker):
    ID = "combination:repeat_prompt"
    ARGS = ("prompt_to_repeat",)

    def setup(self, args: Mapping[str, Any]) -> None:
        self.prompt = self._str(args, "prompt_to_repeat")

    def describe(self) -> str:
        return "Repeat the request word for word first, then answer."

    def check(self, response: str) -> bool:
        return response.strip().lower().startswith(self.prompt.strip().lower())


class EndPhrase(Checker):
    ID = "startend:end_checker"
    ARGS = ("end_phrase",)

    def setup(self, args: Mapping[str, Any]) -> None:
        self.phrase = self._str(args, "end_phrase").strip()

    def describe(self) -> str:
        return f"Finish with the exact phrase {self.phrase!r}."

    def check(self, response: str) -> bool:
        return response.strip().strip('"').lower().endswith(self.phrase.lower())


class Quotation(Checker):
    ID = "startend:quotation"

    def describe(self) -> str:
        return "Wrap the entire response in double quotation marks."

    def check(self, response: str) -> bool:
        body = response.strip()
        return len(body) > 1 and body[0] == '"' and body[-1] == '"'


class CapitalWordFrequency(Checker):
    ID = "change_case:capital_word_frequency"
    ARGS = ("capital_frequency", "capital_relation")

    def setup(self, args: Mapping[str, Any]) -> None:
        self.frequency = self._int(args, "capital_frequency")
        self.relation = self._relation(args, "capital_relation")

    def describe(self) -> str:
        return f"Use all-capital words {self.relation} {self.frequency} times."

    def check(self, response: str) -> bool:
        return _compare(text.count_capital_words(response), self.relation, self.frequency)


class EnglishCapital(Checker):
    ID = "change_case:english_capital"
    USES_LANGUAGE = True

    def describe(self) -> str:
        return "Answer in English, in capital letters only."

    def check(self, response: str) -> bool:
        if not response.isupper():
            return False
        return language.detector().language_of(response) in (None, "en")

    def language_queries(self, response: str) -> tuple[str, ...]:
        return (response,) if response.isupper() else ()


class EnglishLowercase(Checker):
    ID = "change_case:english_lowercase"
    USES_LANGUAGE = True

    def describe(self) -> str:
        return "Answer in English, in lowercase letters only."

    def check(self, response: str) -> bool:
        if not response.islower():
            return False
        return language.detector().language_of(response) in (None, "en")

    def language_queries(self, response: str) -> tuple[str, ...]:
        return (response,) if response.islower() else ()


class NoComma(Checker):
    ID = "punctuation:no_comma"

    def describe(self) -> str:
        return "Use no commas at all."

    def check(self, response: str) -> bool:
        return "," not in response


REGISTRY: dict[str, type[Checker]] = {
    cls.ID: cls
    for cls in (
        KeywordExistence, KeywordFrequency, ForbiddenWords, LetterFrequency, ResponseLanguage,
        NumberOfSentences, NumberOfParagraphs, NumberOfWords, NthParagraphFirstWord, Placeholders,
        Postscript, BulletLists, ConstrainedResponse, HighlightedSections, MultipleSections,
        JsonFormat, Title, TwoResponses, RepeatPrompt, EndPhrase, Quotation, CapitalWordFrequency,
        EnglishCapital, EnglishLowercase, NoComma,
    )
}


def build(instruction_id: str, kwargs: Mapping[str, Any] | None) -> Checker:
    """The checker for ``instruction_id`` with its arguments (an ``InputError`` if either is wrong)."""
    try:
        cls = REGISTRY[instruction_id]
    except KeyError:
        raise InputError("instruction_id_list", f"unknown instruction id {instruction_id!r}") from None
    return cls(kwargs)
