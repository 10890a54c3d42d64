"""``dsa-validate ifeval compare``: did accuracy hold between two runs of the same prompts?

Why: "86.69 -> 87.8" says nothing about noise. The two runs answer the same 541 prompts, so the
comparison is paired: the interval of each metric's difference comes from a bootstrap over prompts
(an instruction-level metric resamples whole prompts with their instructions, since a prompt's
instructions share one response), and the prompt-level outcomes get an exact McNemar test (a binomial
test on the discordant pairs, ``scipy.stats.binomtest``). The gate fails when a lower bound of
After - Before reaches below ``-margin`` points, or, with ``expect_identical`` (greedy decoding of a
refactor that must be bit-exact), when any answer differs. Inputs are the run folders written by
``ifeval run`` (``scores.json`` for the verdicts, ``responses.jsonl`` for the texts).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evals.ifeval.store import read_answers
from validation.errors import InputError, MissingDependency

METRICS = (
    "Prompt-level-strict-accuracy",
    "Inst-level-strict-accuracy",
    "Prompt-level-loose-accuracy",
    "Inst-level-loose-accuracy",
)


def load_run(folder: str | Path, label: str) -> dict[str, Any]:
    """A run folder's per-prompt verdicts and answers, keyed by prompt key."""
    root = Path(folder)
    scores = root / "scores.json"
    if not root.is_dir():
        raise InputError(label, f"{root} is not a folder")
    if not scores.is_file():
        raise InputError(label, f"{root} has no scores.json (an unfinished run? finish it with ifeval run --resume)")
    try:
        details = json.loads(scores.read_text(encoding="utf-8"))["details"]
        verdicts = {d["key"]: d for d in details}
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise InputError(label, f"{scores} is not a scores.json written by dsa-validate ifeval") from None
    answers = read_answers(root / "responses.jsonl").answers
    return {"folder": str(root), "verdicts": verdicts, "answers": answers}


def compare_runs(before: str | Path, after: str | Path, *, margin: float = 1.0, alpha: float = 0.05,
                 expect_identical: bool = False, resamples: int = 2000, seed: int = 0,
                 out: str | Path | None = None) -> dict[str, Any]:
    """Compare two run folders; write report.md, chart.png and compare.json into ``out``; return the result."""
    result = compare_loaded(load_run(before, "RUN_BEFORE"), load_run(after, "RUN_AFTER"), margin=margin,
                            alpha=alpha, expect_identical=expect_identical, resamples=resamples, seed=seed)
    folder = Path(out) if out else Path(after) / "compare"
    folder.mkdir(parents=True, exist_ok=True)
    from evals.ifeval import comparison_report

    result["files"] = {"report": str(folder / "report.md"), "chart": str(folder / "chart.png"),
                       "json": str(folder / "compare.json")}
    comparison_report.write_chart(result, folder / "chart.png")
    (folder / "report.md").write_text(comparison_report.markdown(result), encoding="utf-8")
    (folder / "compare.json").write_text(json.dumps(result, indent=1, sort_keys=True, ensure_ascii=False) + "\n",
                                         encoding="utf-8")
    return result


def compare_loaded(before: dict[str, Any], after: dict[str, Any], *, margin: float = 1.0, alpha: float = 0.05,
                   expect_identical: bool = False, resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """The paired comparison of two loaded runs (``load_run``), with its gate; writes nothing."""
    if not 0 < alpha < 1:
        raise InputError("--alpha", f"must be between 0 and 1, got {alpha}")
    if margin < 0:
        raise InputError("--margin", f"must be at least 0, got {margin}")
    runs = before, after
    keys = _common_keys(runs[0]["verdicts"], runs[1]["verdicts"])
    outcomes = [_outcomes(run["verdicts"], keys) for run in runs]
    result: dict[str, Any] = {
        "before": runs[0]["folder"], "after": runs[1]["folder"], "prompts": len(keys),
        "instructions": int(sum(len(runs[0]["verdicts"][k]["instructions"]) for k in keys)),
        "settings": {"margin": margin, "alpha": alpha, "resamples": resamples, "seed": seed,
                     "expect_identical": expect_identical},
    }
    result["unanswered"] = {label: sorted(k for k in keys if not run["verdicts"][k].get("has_response", True))
                            for label, run in zip(("before", "after"), runs)}
    result["metrics"] = _metric_table(outcomes, alpha, resamples, seed)
    for mode in ("strict", "loose"):
        name = f"Prompt-level-{mode}-accuracy"
        result["metrics"][name]["mcnemar"] = mcnemar(outcomes[0][f"all_{mode}"], outcomes[1][f"all_{mode}"])
    result["per_instruction"] = per_instruction(runs[0]["verdicts"], runs[1]["verdicts"], keys)
    differing = [k for k in keys if _text(runs[0], k) != _text(runs[1], k)]
    result["identical_responses"] = len(keys) - len(differing)
    result["differing_responses"] = differing
    result["prompts_text"] = {k: _prompt(runs, k) for k in keys if k in differing or _changed(result, k)}
    result["gate"] = gate(result, margin, expect_identical)
    return result


def run_intervals(run: dict[str, Any], *, alpha: float = 0.05, resamples: int = 2000,
                  seed: int = 0) -> dict[str, dict[str, float]]:
    """One loaded run's four metrics (percent) with bootstrap intervals over its prompts (instruction-level
    metrics resample whole prompts, as in the paired comparison)."""
    np = _numpy()
    keys = sorted(run["verdicts"])
    parts = _metric_parts(_outcomes(run["verdicts"], keys))
    picks = np.random.default_rng(seed).integers(0, len(keys), size=(resamples, len(keys)))
    table = {}
    for name in METRICS:
        num, den = parts[name]
        low, high = np.quantile(100.0 * num[picks].sum(axis=1) / den[picks].sum(axis=1), [alpha / 2, 1 - alpha / 2])
        table[name] = {"value": float(100.0 * num.sum() / den.sum()), "ci_low": float(low), "ci_high": float(high)}
    return table


def _common_keys(first: dict[int, Any], second: dict[int, Any]) -> list[int]:
    only_before = sorted(first.keys() - second.keys())
    only_after = sorted(second.keys() - first.keys())
    if only_before or only_after:
        def some(keys: list[int]) -> str:
            return ", ".join(map(str, keys[:5])) + (" ..." if len(keys) > 5 else "")

        raise InputError("RUN_AFTER", f"the runs scored different prompts: {len(only_before)} only in RUN_BEFORE "
                         f"({some(only_before)}), {len(only_after)} only in RUN_AFTER ({some(only_after)})")
    keys = sorted(first)
    for key in keys:
        ids = [i["instruction_id"] for i in first[key]["instructions"]]
        if ids != [i["instruction_id"] for i in second[key]["instructions"]]:
            raise InputError("RUN_AFTER", f"prompt {key} carries other instructions than in RUN_BEFORE")
    return keys


def _numpy() -> Any:
    import numpy as np

    return np


def _outcomes(verdicts: dict[int, Any], keys: list[int]) -> dict[str, Any]:
    """Per prompt, in key order: all followed (strict, loose), instructions followed, instructions."""
    np = _numpy()
    rows = [verdicts[k]["instructions"] for k in keys]
    return {
        "all_strict": np.array([all(i["strict"] for i in r) for r in rows], dtype=np.int64),
        "all_loose": np.array([all(i["loose"] for i in r) for r in rows], dtype=np.int64),
        "inst_strict": np.array([sum(i["strict"] for i in r) for r in rows], dtype=np.int64),
        "inst_loose": np.array([sum(i["loose"] for i in r) for r in rows], dtype=np.int64),
        "inst_total": np.array([len(r) for r in rows], dtype=np.int64),
    }


def _metric_parts(o: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Each metric as (numerator per prompt, denominator per prompt): a ratio of sums over prompts."""
    ones = o["inst_total"] * 0 + 1
    return {METRICS[0]: (o["all_strict"], ones), METRICS[1]: (o["inst_strict"], o["inst_total"]),
            METRICS[2]: (o["all_loose"], ones), METRICS[3]: (o["inst_loose"], o["inst_total"])}


def _metric_table(outcomes: list[dict[str, Any]], alpha: float, resamples: int, seed: int) -> dict[str, Any]:
    """Before, After, difference (points) and the paired-bootstrap interval of the difference."""
    np = _numpy()
    before, after = _metric_parts(outcomes[0]), _metric_parts(outcomes[1])
    n = len(outcomes[0]["inst_total"])
    picks = np.random.default_rng(seed).integers(0, n, size=(resamples, n))  # prompts drawn with replacement
    table = {}
    for name in METRICS:
        (num_b, den), (num_a, _) = before[name], after[name]
        value_b = 100.0 * num_b.sum() / den.sum()
        value_a = 100.0 * num_a.sum() / den.sum()
        diffs = 100.0 * (num_a - num_b)[picks].sum(axis=1) / den[picks].sum(axis=1)
        low, high = np.quantile(diffs, [alpha / 2, 1 - alpha / 2])
        table[name] = {"before": float(value_b), "after": float(value_a), "difference": float(value_a - value_b),
                       "ci_low": float(low), "ci_high": float(high)}
    return table


def mcnemar(before: Any, after: Any) -> dict[str, Any]:
    """Exact McNemar test on paired pass/fail outcomes: two-sided binomial test of the discordant pairs."""
    try:
        from scipy.stats import binomtest
    except ImportError as exc:
        raise MissingDependency("scipy", "runner", "The McNemar test") from exc
    losses = int(((before == 1) & (after == 0)).sum())
    gains = int(((before == 0) & (after == 1)).sum())
    discordant = losses + gains
    p = 1.0 if discordant == 0 else float(binomtest(gains, discordant, 0.5).pvalue)
    return {"gains": gains, "losses": losses, "p_value": p}


def per_instruction(first: dict[int, Any], second: dict[int, Any], keys: list[int]) -> dict[str, Any]:
    """Per instruction id: accuracies before/after and the prompts that gained or lost it (strict, loose)."""
    table: dict[str, Any] = {}
    for key in keys:
        for b, a in zip(first[key]["instructions"], second[key]["instructions"]):
            entry = table.setdefault(b["instruction_id"], {
                "count": 0, "before_strict": 0, "after_strict": 0, "before_loose": 0, "after_loose": 0,
                "gains_strict": [], "losses_strict": [], "gains_loose": [], "losses_loose": []})
            entry["count"] += 1
            for mode in ("strict", "loose"):
                entry[f"before_{mode}"] += b[mode]
                entry[f"after_{mode}"] += a[mode]
                if a[mode] and not b[mode]:
                    entry[f"gains_{mode}"].append(key)
                elif b[mode] and not a[mode]:
                    entry[f"losses_{mode}"].append(key)
    for entry in table.values():
        for field in ("before_strict", "after_strict", "before_loose", "after_loose"):
            entry[field] = 100.0 * entry[field] / entry["count"]
    return dict(sorted(table.items()))


def gate(result: dict[str, Any], margin: float, expect_identical: bool) -> dict[str, Any]:
    """Pass unless a metric's lower bound is below -margin, or an answer differs when it must not."""
    reasons = [f"{name}: lower bound {m['ci_low']:+.2f} < -{margin:g}" for name, m in result["metrics"].items()
               if m["ci_low"] < -margin]
    if expect_identical and result["differing_responses"]:
        reasons.append(f"{len(result['differing_responses'])} responses differ (expected identical)")
    return {"passed": not reasons, "reasons": reasons}


def _text(run: dict[str, Any], key: int) -> str | None:
    answer = run["answers"].get(key)
    return None if answer is None else answer["response"]


def _prompt(runs: tuple[dict[str, Any], ...], key: int) -> str:
    for run in runs:
        answer = run["answers"].get(key)
        if answer and isinstance(answer.get("prompt"), str):
            return answer["prompt"]
    return ""


def _changed(result: dict[str, Any], key: int) -> bool:
    return any(key in entry[f"{kind}_{mode}"] for entry in result["per_instruction"].values()
               for kind in ("gains", "losses") for mode in ("strict", "loose"))


def format_summary(result: dict[str, Any]) -> str:
    """The comparison table, identical answers, the gate and where the files went (for the terminal)."""
    from evals.ifeval import comparison_report

    lines = [comparison_report.table(result), "",
             f"identical responses: {result['identical_responses']} of {result['prompts']}"]
    lines += comparison_report.unanswered_lines(result)
    if result["settings"]["expect_identical"] and result["differing_responses"]:
        shown = result["differing_responses"][:30]
        lines.append("differing responses, keys: " + ", ".join(map(str, shown))
                     + (" ..." if len(result["differing_responses"]) > 30 else ""))
    verdict = "PASS" if result["gate"]["passed"] else "FAIL: " + "; ".join(result["gate"]["reasons"])
    lines.append(f"gate (margin {result['settings']['margin']:g} pt): {verdict}")
    lines.append(f"written: {result['files']['report']}, {result['files']['chart']}, {result['files']['json']}")
    return "\n".join(lines)
