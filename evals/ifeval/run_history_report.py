"""The IFEval history as a Markdown table, a terminal summary and a trend chart (``ifeval history``'s files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evals.ifeval.comparison import METRICS
from validation.errors import MissingDependency

SHORT = {"Prompt-level-strict-accuracy": "prompt strict", "Inst-level-strict-accuracy": "inst strict",
         "Prompt-level-loose-accuracy": "prompt loose", "Inst-level-loose-accuracy": "inst loose"}


def metrics_table(result: dict[str, Any]) -> str:
    """One row per run, oldest first: the four metrics with their bootstrap intervals."""
    level = 100 * (1 - result["settings"]["alpha"])
    rows = ["| # | run | started | " + " | ".join(f"{SHORT[m]} ({level:g}% CI)" for m in METRICS) + " |",
            "|---:|---|---|" + "---|" * len(METRICS)]
    for i, run in enumerate(result["runs"], 1):
        cells = [f"{run['metrics'][m]['value']:.2f} [{run['metrics'][m]['ci_low']:.2f}, "
                 f"{run['metrics'][m]['ci_high']:.2f}]" for m in METRICS]
        name = f"{run['name']} (reference)" if run["reference"] else run["name"]
        rows.append(f"| {i} | {name} | {run['started']} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def comparisons_table(result: dict[str, Any]) -> str:
    """One row per comparison: run against the previous run and against the reference, paired tests."""
    margin = result["settings"]["margin"]
    rows = ["| run | against | identical answers | " + " | ".join(f"{SHORT[m]} diff [CI]" for m in METRICS)
            + " | McNemar p strict / loose | gate |", "|---|---|---:|" + "---|" * len(METRICS) + "---|---|"]
    for run in result["runs"]:
        for label in ("vs_previous", "vs_reference"):
            c = run.get(label)
            if c is None:
                continue
            cells = [f"{c['metrics'][m]['difference']:+.2f} [{c['metrics'][m]['ci_low']:+.2f}, "
                     f"{c['metrics'][m]['ci_high']:+.2f}]" for m in METRICS]
            tests = " / ".join(f"{c['metrics'][m]['mcnemar']['p_value']:.3g}" for m in METRICS
                               if "mcnemar" in c["metrics"][m])
            gate = "held" if c["gate"]["passed"] else f"DROP (lower bound < -{margin:g})"
            against = "previous" if label == "vs_previous" else "reference"
            rows.append(f"| {run['name']} | {against} | {c['identical_responses']}/{c['prompts']} | "
                        + " | ".join(cells) + f" | {tests} | {gate} |")
    return "\n".join(rows)


def skipped_lines(result: dict[str, Any]) -> list[str]:
    """The folders among the runs that were not runs (no scores.json: a run killed before it scored), and the
    runs with unanswered prompts (scored as not followed)."""
    lines = [f"skipped: {folder} (no scores.json: unfinished, or not a run; finish it with ifeval run --resume)"
             for folder in result["skipped"]]
    lines += [f"WARNING: {run['name']} has {len(run['unanswered'])} unanswered prompts, scored as not followed "
              f"(keys {', '.join(map(str, run['unanswered'][:10]))}{' ...' if len(run['unanswered']) > 10 else ''})"
              for run in result["runs"] if run["unanswered"]]
    return lines


def verdict_line(result: dict[str, Any]) -> str:
    newest = result["runs"][-1]["name"]
    verdict = result["verdict"]
    if verdict.get("note"):
        return f"verdict: held ({verdict['note']})"
    if verdict["dropped"]:
        return f"verdict: DROP: {newest} against the reference: " + "; ".join(verdict["reasons"])
    return f"verdict: held: {newest} did not drop against the reference (margin {result['settings']['margin']:g} pt)"


def markdown(result: dict[str, Any]) -> str:
    """history.md: both tables, the verdict and the chart."""
    settings = result["settings"]
    pinned = "pinned with --reference" if result["reference_pinned"] else "the oldest run (no --reference)"
    return "\n".join([
        "# IFEval history", "",
        f"{len(result['runs'])} runs, oldest first. Reference: `{result['reference']}` ({pinned}). Intervals from "
        f"{settings['resamples']} bootstrap resamples over prompts (seed {settings['seed']}); differences are "
        "paired (the same prompts), with exact McNemar tests on the prompt-level outcomes.", "",
        "## Runs", "", metrics_table(result), "",
        "## Each run against the previous one and the reference", "", comparisons_table(result), "",
        *[line + "  " for line in skipped_lines(result)],
        f"**{verdict_line(result)}**", "",
        "![IFEval trend](history.png)", "",
    ])


def write_chart(result: dict[str, Any], path: Path) -> None:
    """One panel per metric: each run's value with its interval, oldest left, the reference dashed."""
    try:
        import matplotlib
    except ImportError as exc:
        raise MissingDependency("matplotlib", "runner", "The history chart") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result["runs"]
    xs = list(range(len(runs)))
    reference = next(i for i, r in enumerate(runs) if r["reference"])
    dropped = result["verdict"]["dropped"]
    fig, axes = plt.subplots(2, 2, figsize=(max(8.0, 1.1 * len(runs) + 5), 7), sharex=True)
    for ax, name in zip(axes.flat, METRICS):
        values = [r["metrics"][name]["value"] for r in runs]
        lows = [r["metrics"][name]["ci_low"] for r in runs]
        highs = [r["metrics"][name]["ci_high"] for r in runs]
        ax.fill_between(xs, lows, highs, color="#1f77b4", alpha=0.15, label="95% bootstrap interval")
        ax.plot(xs, values, marker="o", color="#1f77b4", label="run")
        ax.axhline(values[reference], color="#555555", linestyle="--", linewidth=1, label="reference")
        if dropped:
            ax.plot([xs[-1]], [values[-1]], marker="o", markersize=11, color="#d62728", fillstyle="none",
                    label="dropped against the reference")
        ax.set_title(name, fontsize=10)
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xticks(xs, [f"{r['name']}\n{r['started'][:16]}" for r in runs], rotation=30, ha="right", fontsize=7)
    axes[0][0].legend(fontsize=7, loc="lower left")
    state = "DROPPED against" if dropped else "held against"
    fig.suptitle(f"IFEval history, {len(runs)} runs: the newest ({runs[-1]['name']}) {state} the reference "
                 f"({runs[reference]['name']}, dashed)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
