"""The deterministic workload of ``dsa-validate e2e``: which prompts arrive when, and what each exercises.

Small enough for three runs in well under a minute on two cores, and shaped so every phase of a
server's life shows up under the e2e engine settings (4 rows, a 64-token budget, a 320-token pool):
whole prefills, prompts longer than the budget (chunked prefill), requests sharing a long prefix with
a running one (prefix-cache hits at block size 64 and below), decode, and enough cache pressure that
requests are preempted and recomputed. Early arrivals are short and independent, so the first steps
show prefill and decode on their own before the first chunk continuation. Prompts are the suite's
own IFEval sample (``fixtures/ifeval/sample_input.jsonl``), wrapped in the model's chat template.
Stop tokens are not used: every request generates exactly ``max_tokens``, so the schedule is the
same in every run whatever the implementation under test does to the text.
"""

from __future__ import annotations

import fixtures
import json
from dataclasses import dataclass
from typing import Any

SAMPLE = fixtures.ROOT / "ifeval" / "sample_input.jsonl"

# A shared preamble long enough to fill a whole 64-token block after the chat template's system turn.
PREAMBLE = ("You are answering questions for a travel magazine read by families. Keep a warm tone, be "
            "concrete, prefer short sentences, avoid lists unless asked, and never mention that you are an "
            "assistant. Now the question: ")

# (arrival step, prompt keys joined into one user turn, preamble?, max_tokens, what it exercises).
# Part one (no chunk continuation, no prefix hit): prefills, decode, pool pressure and a preemption whose
# recompute fits in one step. Part two: prompts longer than the budget and a shared 64-token prefix.
PLAN: tuple[tuple[int, tuple[int, ...], bool, int, str], ...] = (
    (0, (131,), False, 20, "prefill; grows into a second block"),
    (1, (141,), False, 20, "prefill while the first decodes; grows into a second block"),
    (2, (115,), False, 24, "prefill; one block"),
    (3, (120,), False, 24, "prefill; preempted when the pool runs out, recomputed later"),
    (40, (101,), False, 24, "prefill after the pressure"),
    (52, (121,), False, 22, "decode"),
    (70, (155,), False, 24, "decode"),
    (88, (160,), False, 24, "decode"),
    (104, (129,), False, 24, "decode"),
    (122, (137,), False, 22, "decode"),
    (140, (105,), False, 24, "decode"),
    (162, (143, 131, 158), False, 16, "long prompt: chunked prefill over the budget"),
    (168, (133,), True, 20, "shared preamble: owner of the prefix (chunked)"),
    (178, (134,), True, 24, "shared preamble: prefix-cache hit"),
    (182, (113,), True, 24, "shared preamble: prefix-cache hit"),
)


@dataclass(frozen=True)
class WorkItem:
    arrival: int
    prompt_ids: tuple[int, ...]
    max_tokens: int
    what: str


def build(tokenizer: Any, num_requests: int | None = None) -> list[WorkItem]:
    """The first ``num_requests`` items of the plan as token ids."""
    prompts = {}
    with SAMPLE.open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            prompts[int(row["key"])] = row["prompt"]
    items = []
    for arrival, keys, preamble, max_tokens, what in PLAN[:num_requests]:
        text = " ".join(prompts[k] for k in keys)
        if preamble:
            text = PREAMBLE + text
        ids = tokenizer.encode(tokenizer.apply_chat_template([{"role": "user", "content": text}]))
        items.append(WorkItem(arrival, tuple(ids), max_tokens, what))
    return items
