"""Strict and loose IFEval verdicts, the four headline metrics, breakdowns and per-prompt details.

Strict: an instruction is followed when the response is non-empty and its checker accepts it. Loose:
followed when the checker accepts any of eight variants of the response (as is, without ``*``, without
its first line, without its last line, without both, and each of those three without ``*``), each
variant also required to be non-empty, as in the reference. Identical variants are checked once, and
the text measurements behind the checkers are memoised, so the loose pass costs little over the
strict one. A prompt without a response counts as not followed. Output is deterministic: the same
inputs give byte-identical JSON.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from evals.ifeval import language
from evals.ifeval.checkers import Checker
from evals.ifeval.data import Prompt, Responses

METRIC_NAMES = (
    "Prompt-level-strict-accuracy",
    "Inst-level-strict-accuracy",
    "Prompt-level-loose-accuracy",
    "Inst-level-loose-accuracy",
)


@dataclass(frozen=True)
class PromptResult:
    """One prompt's verdicts: per instruction, strict and loose."""

    key: int
    instruction_ids: tuple[str, ...]
    strict: tuple[bool, ...]
    loose: tuple[bool, ...]
    has_response: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "has_response": self.has_response,
            "follow_all_instructions_strict": all(self.strict),
            "follow_all_instructions_loose": all(self.loose),
            "instructions": [
                {"instruction_id": i, "strict": s, "loose": lo}
                for i, s, lo in zip(self.instruction_ids, self.strict, self.loose)
            ],
        }


def loose_variants(response: str) -> list[str]:
    """The reference's eight loose variants, in its order, duplicates removed."""
    lines = response.split("\n")
    without_first = "\n".join(lines[1:]).strip()
    without_last = "\n".join(lines[:-1]).strip()
    without_both = "\n".join(lines[1:-1]).strip()
    variants = [
        response,
        response.replace("*", ""),
        without_first,
        without_last,
        without_both,
        without_first.replace("*", ""),
        without_last.replace("*", ""),
        without_both.replace("*", ""),
    ]
    return list(dict.fromkeys(variants))


def follows_strict(checker: Checker, response: str) -> bool:
    return bool(response.strip()) and checker.check(response)


def follows_loose(checker: Checker, variants: Iterable[str]) -> bool:
    return any(v.strip() and checker.check(v) for v in variants)


def score_prompts(prompts: Sequence[Prompt], responses: Sequence[str | None]) -> list[PromptResult]:
    """Verdicts for each prompt with its response (None: missing, follows nothing).

    Same verdicts as checking prompt by prompt, computed in another order: every language detection
    the checkers may ask for (each non-empty variant of each response a language checker sees) is
    made in one batch, which costs a fraction of many single detections, and, where a second core
    is free, in a forked process while this one checks the instructions that need no language.
    """
    variants = [None if r is None else loose_variants(r) for r in responses]
    queries = [q for p, vs in zip(prompts, variants) if vs is not None
               for c in p.checkers if c.USES_LANGUAGE for v in vs if v.strip() for q in c.language_queries(v)]
    verdicts: dict[tuple[int, int], tuple[bool, bool]] = {}

    def check(uses_language: bool) -> None:
        for index, (p, r, vs) in enumerate(zip(prompts, responses, variants)):
            if r is None or vs is None:
                continue
            for k, c in enumerate(p.checkers):
                if c.USES_LANGUAGE is uses_language:
                    strict = follows_strict(c, r)
                    verdicts[index, k] = (strict, strict or follows_loose(c, vs))

    with language.detector().in_background(queries):
        check(uses_language=False)
    check(uses_language=True)
    results = []
    for index, (p, r) in enumerate(zip(prompts, responses)):
        n = len(p.checkers)
        if r is None:
            results.append(PromptResult(p.key, p.instruction_ids, (False,) * n, (False,) * n, False))
            continue
        pairs = [verdicts[index, k] for k in range(n)]
        results.append(PromptResult(p.key, p.instruction_ids, tuple(s for s, _ in pairs),
                                    tuple(lo for _, lo in pairs), True))
    return results


def _percent(hits: int, total: int) -> float:
    return 100.0 * hits / total if total else 0.0


def _accuracy(results: Sequence[PromptResult], mode: str) -> tuple[float, float]:
    verdicts = [getattr(r, mode) for r in results]
    prompt_level = _percent(sum(all(v) for v in verdicts), len(verdicts))
    flat = [x for v in verdicts for x in v]
    return prompt_level, _percent(sum(flat), len(flat))


def _breakdown(results: Sequence[PromptResult], name_of: Any) -> dict[str, dict[str, float | int]]:
    totals: dict[str, list[int]] = {}
    for r in results:
        for instruction_id, s, lo in zip(r.instruction_ids, r.strict, r.loose):
            entry = totals.setdefault(name_of(instruction_id), [0, 0, 0])
            entry[0] += 1
            entry[1] += s
            entry[2] += lo
    return {
        name: {"count": n, "strict_accuracy": _percent(s, n), "loose_accuracy": _percent(lo, n)}
        for name, (n, s, lo) in sorted(totals.items())
    }


def score(prompts: Sequence[Prompt], responses: Responses) -> dict[str, Any]:
    """The whole report: metrics (percent), breakdowns, per-prompt details, missing and unknown.

    The cyclic garbage collector is paused while scoring (nothing here makes reference cycles, and its
    passes over the many memoised tuples cost more than a tenth of the run); restored on the way out.
    """
    paused = gc.isenabled()
    gc.disable()
    try:
        return _score(prompts, responses)
    finally:
        if paused:
            gc.enable()


def _score(prompts: Sequence[Prompt], responses: Responses) -> dict[str, Any]:
    results = score_prompts(prompts, [responses.by_key.get(p.key) for p in prompts])
    prompt_strict, inst_strict = _accuracy(results, "strict")
    prompt_loose, inst_loose = _accuracy(results, "loose")
    return {
        "metrics": dict(zip(METRIC_NAMES, (prompt_strict, inst_strict, prompt_loose, inst_loose))),
        "counts": {
            "prompts": len(results),
            "instructions": sum(len(r.strict) for r in results),
            "responses_matched": sum(r.has_response for r in results),
        },
        "per_instruction": _breakdown(results, lambda i: i),
        "per_category": _breakdown(results, lambda i: i.split(":")[0]),
        "missing_responses": sorted(r.key for r in results if not r.has_response),
        "unknown_responses": [dict(u) for u in responses.unmatched],
        "details": [r.as_dict() for r in results],
    }


def to_json(report: dict[str, Any]) -> str:
    """Deterministic serialisation: sorted keys, fixed separators, trailing newline."""
    return json.dumps(report, sort_keys=True, indent=1, ensure_ascii=False) + "\n"
