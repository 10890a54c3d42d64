"""What people read after ``ifeval compare``: the markdown report and the per-instruction chart.

Why its own module: the statistics (``compare.py``) are tested on numbers; this turns them into a
``report.md`` pasteable into a pull request (the metric | Before | After table FastDeploy PRs use,
plus the difference, its interval and the McNemar p) and a PNG chart. matplotlib is imported only
here, inside ``write_chart``, with the Agg backend (no display needed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from validation.errors import MissingDependency

EXCERPT = 90  # characters of a prompt shown beside its key


def table(result: dict[str, Any]) -> str:
    """The metric table as markdown (also readable in a terminal)."""
    level = 100 * (1 - result["settings"]["alpha"])
    rows = [f"| metric | Before | After | After - Before | {level:g}% CI (paired bootstrap) | McNemar exact p |",
            "|---|---:|---:|---:|---|---:|"]
    for name, m in result["metrics"].items():
        p = m.get("mcnemar")
        test = f"{p['p_value']:.3g} (+{p['gains']} / -{p['losses']})" if p else "-"
        rows.append(f"| {name} | {m['before']:.2f} | {m['after']:.2f} | {m['difference']:+.2f} | "
                    f"[{m['ci_low']:+.2f}, {m['ci_high']:+.2f}] | {test} |")
    return "\n".join(rows)


def markdown(result: dict[str, Any]) -> str:
    """The whole report.md."""
    gate = result["gate"]
    settings = result["settings"]
    out = [
        "# IFEval: before vs after", "",
        f"Before: `{result['before']}`  ", f"After: `{result['after']}`  ",
        f"{result['prompts']} prompts, {result['instructions']} instructions; intervals from {settings['resamples']} "
        f"paired bootstrap resamples over prompts (seed {settings['seed']}); McNemar on prompt-level outcomes "
        "(+gains / -losses).", "",
        table(result), "",
        f"Identical responses: {result['identical_responses']} of {result['prompts']}.", "",
        *[line + "  " for line in unanswered_lines(result)],
        f"**Gate (After - Before lower bound >= -{settings['margin']:g} pt"
        + (", responses identical" if settings["expect_identical"] else "") + "): "
        + ("PASS**" if gate["passed"] else "FAIL**: " + "; ".join(gate["reasons"])), "",
        "![per-instruction accuracy](chart.png)", "",
    ]
    changed = {i: e for i, e in result["per_instruction"].items()
               if e["gains_strict"] or e["losses_strict"] or e["gains_loose"] or e["losses_loose"]}
    out += ["## Per instruction (strict)", ""]
    if not changed:
        out += ["No instruction changed verdict on any prompt.", ""]
    else:
        out += ["| instruction | n | Before | After | gains | losses |", "|---|---:|---:|---:|---:|---:|"]
        for name, e in sorted(changed.items(), key=lambda kv: len(kv[1]["gains_strict"]) - len(kv[1]["losses_strict"])):
            out.append(f"| {name} | {e['count']} | {e['before_strict']:.1f} | {e['after_strict']:.1f} | "
                       f"{len(e['gains_strict'])} | {len(e['losses_strict'])} |")
        out += ["", "### Prompts that gained or lost an instruction", ""]
        for name, e in sorted(changed.items()):
            for kind in ("losses", "gains"):
                for mode in ("strict", "loose"):
                    keys = e[f"{kind}_{mode}"]
                    if keys:
                        out.append(f"- `{name}` {'lost' if kind == 'losses' else 'gained'} ({mode}): "
                                   + "; ".join(_prompt_ref(result, k) for k in keys))
        out.append("")
    if settings["expect_identical"] and result["differing_responses"]:
        out += ["## Responses that differ", ""]
        out += [f"- {_prompt_ref(result, k)}" for k in result["differing_responses"]]
        out.append("")
    return "\n".join(out)


def unanswered_lines(result: dict[str, Any]) -> list[str]:
    """A warning per run with prompts it never answered (scored as not followed)."""
    return [f"WARNING: {label} has {len(keys)} unanswered prompts, scored as not followed (keys "
            f"{', '.join(map(str, keys[:10]))}{' ...' if len(keys) > 10 else ''}); finish it with ifeval run --resume"
            for label, keys in result["unanswered"].items() if keys]


def _prompt_ref(result: dict[str, Any], key: int) -> str:
    text = " ".join(result["prompts_text"].get(key, "").split())
    return f"{key} \"{text[:EXCERPT]}{'...' if len(text) > EXCERPT else ''}\"" if text else str(key)


def write_chart(result: dict[str, Any], path: Path) -> None:
    """Per-instruction strict accuracy before and after (left) and the differences in points (right)."""
    try:
        import matplotlib
    except ImportError as exc:
        raise MissingDependency("matplotlib", "runner", "The comparison chart") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["per_instruction"])
    entries = [result["per_instruction"][n] for n in names]
    before = [e["before_strict"] for e in entries]
    after = [e["after_strict"] for e in entries]
    diffs = [a - b for a, b in zip(after, before)]
    rows = range(len(names))
    height = max(4.0, 0.32 * len(names) + 1.5)
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, height), sharey=True,
                                      gridspec_kw={"width_ratios": [3, 2]})
    left.barh([r - 0.2 for r in rows], before, height=0.4, label="Before", color="#8c8c8c")
    left.barh([r + 0.2 for r in rows], after, height=0.4, label="After", color="#1f77b4")
    left.set_yticks(list(rows), [f"{n} (n={e['count']})" for n, e in zip(names, entries)], fontsize=8)
    left.invert_yaxis()
    left.set_xlim(0, 100)
    left.set_xlabel("strict accuracy per instruction (%)")
    left.legend(loc="lower right", fontsize=8)
    right.barh(list(rows), diffs, color=["#2ca02c" if d > 0 else "#d62728" if d < 0 else "#8c8c8c" for d in diffs])
    right.axvline(0, color="black", linewidth=0.8)
    right.set_xlabel("After - Before (points)")
    headline = result["metrics"]["Prompt-level-strict-accuracy"]
    fig.suptitle(f"IFEval per instruction: prompt-level strict {headline['before']:.2f} -> {headline['after']:.2f} "
                 f"({headline['difference']:+.2f}, CI [{headline['ci_low']:+.2f}, {headline['ci_high']:+.2f}])",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
