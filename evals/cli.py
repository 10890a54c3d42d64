"""``dsa-validate ifeval score``: score a responses file against the IFEval prompts.

Also the entry point for the main job: ``run_ifeval`` scores, writes the JSON report and returns it,
and with no data given anywhere the main job can pass the shipped sample (``evals.data.sample_paths``).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from evals.data import DATA_ENV, HUB_DATASET

EXAMPLES = """examples:
  dsa-validate ifeval score --responses responses.jsonl --data input_data.jsonl --json report.json
  DSA_IFEVAL_DATA=input_data.jsonl dsa-validate ifeval score --responses responses.jsonl
  dsa-validate ifeval score --responses fixtures/ifeval/sample_responses.jsonl \\
      --data fixtures/ifeval/sample_input.jsonl --details details.jsonl

responses: one JSON object a line, {"key": 1000, "response": "..."} or the reference's
{"prompt": "...", "response": "..."}; matched by key, else by exact prompt text."""


def register(subparsers: Any) -> None:
    """Add ``ifeval`` and its ``score`` subcommand to the ``dsa-validate`` parser."""
    ifeval = subparsers.add_parser(
        "ifeval", help="score IFEval responses (reference-identical verdicts)",
        description="IFEval (Zhou et al. 2023) scoring with the reference implementation's verdicts.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES,
    )
    sub = ifeval.add_subparsers(dest="ifeval_command", metavar="SUBCOMMAND")
    sub.required = True
    score = sub.add_parser(
        "score", help="print the four IFEval metrics and write the JSON report",
        description="Score model responses strictly and loosely against the IFEval prompts.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES,
    )
    score.add_argument("--responses", required=True, help="JSONL of model responses")
    score.add_argument("--data", help=f"IFEval prompts, jsonl or parquet (default: ${DATA_ENV}, "
                       f"else the hub's {HUB_DATASET} when online)")
    score.add_argument("--json", dest="json_out", help="write the report (metrics, breakdowns, details) here")
    score.add_argument("--details", dest="details_out", help="write per-prompt verdicts here, one JSON line each")
    score.set_defaults(func=_score_command)


def run_ifeval(
    responses: str | os.PathLike[str],
    data_path: str | os.PathLike[str] | None = None,
    json_out: str | os.PathLike[str] | None = None,
    details_out: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Score ``responses`` against the prompts, write the requested files, return the report."""
    from evals import data, scoring

    prompts = data.load_prompts(data_path)
    report = scoring.score(prompts, data.load_responses(responses, prompts))
    if json_out:
        Path(json_out).write_text(scoring.to_json(report), encoding="utf-8")
    if details_out:
        lines = (json.dumps(d, sort_keys=True, ensure_ascii=False) + "\n" for d in report["details"])
        Path(details_out).write_text("".join(lines), encoding="utf-8")
    return report


def format_table(report: dict[str, Any]) -> str:
    """The four metrics as a small table, plus what was missing or unknown."""
    from evals import scoring

    width = max(len(n) for n in scoring.METRIC_NAMES)
    rows = [f"{'metric':<{width}}  accuracy (%)", f"{'-' * width}  ------------"]
    rows += [f"{name:<{width}}  {value:12.2f}" for name, value in report["metrics"].items()]
    counts = report["counts"]
    rows.append(f"{counts['prompts']} prompts, {counts['instructions']} instructions, "
                f"{counts['responses_matched']} responses matched")
    if report["missing_responses"]:
        rows.append(f"missing responses (counted as not followed), keys: "
                    f"{', '.join(map(str, report['missing_responses']))}")
    if report["unknown_responses"]:
        rows.append(f"responses matching no prompt, lines: "
                    f"{', '.join(str(u['line']) for u in report['unknown_responses'])}")
    return "\n".join(rows)


def _score_command(args: argparse.Namespace) -> int:
    report = run_ifeval(args.responses, args.data, args.json_out, args.details_out)
    print(format_table(report))
    return 0
