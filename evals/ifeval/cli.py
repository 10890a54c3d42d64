"""``dsa-validate ifeval``: ``score`` a responses file, ``run`` served models (``client.py``), ``compare`` two runs,
``history`` of many.

Heavy modules (the scorer's NLTK and langdetect, httpx, scipy, matplotlib) are imported inside the
command that needs them, so each subcommand's process pays only for its own. Also the entry point
for the main job: ``run_ifeval`` scores, writes the JSON report and returns it, and with no data
given anywhere the main job can pass the shipped sample (``evals.ifeval.data.sample_paths``).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from evals.ifeval.data import DATA_ENV, HUB_DATASET
from validation import atomic_file
from validation.options import (finite_float, non_negative_float, output_file, output_folder, positive_float, positive_int,
                                probability)

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
        "ifeval", help="IFEval: score responses, ask served models (run), compare two runs, a history of runs",
        description="IFEval (Zhou et al. 2023): scoring with the reference implementation's verdicts, a resumable "
        "runner against OpenAI-compatible servers, and a paired before/after comparison with a gate.",
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
    score.add_argument("--json", dest="json_out", type=output_file, help="write the report (metrics, breakdowns, details) here")
    score.add_argument("--details", dest="details_out", type=output_file, help="write per-prompt verdicts here, one JSON line each")
    score.set_defaults(func=_score_command)
    _register_run(sub)
    _register_compare(sub)
    _register_history(sub)


RUN_EXAMPLES = """examples:
  dsa-validate ifeval run --base-url http://gpu1:8188/v1 --base-url http://gpu2:8188/v1 \\
      --model deepseek-v3.2 --data input_data.jsonl --out runs/before --max-tokens 4096 \\
      --extra-body '{"chat_template_kwargs": {"enable_thinking": false}}'
  dsa-validate ifeval run ... --out runs/before --resume      # after a crash: asks only what is missing

RUNDIR gets responses.jsonl (one answer a line, synced as it arrives), failures.jsonl (prompts that
failed for good), scores.json (the scorer's report) and run.json (settings, servers, versions, counts;
never the API key, which is read from the variable named by --api-key-env). Exit 1 when prompts are
still unanswered at the end (rerun with --resume)."""

COMPARE_EXAMPLES = """examples:
  dsa-validate ifeval compare runs/before runs/after                 # gate: CI lower bound >= -1.0 pt
  dsa-validate ifeval compare runs/before runs/after --expect-identical --out compare/

Writes report.md (pasteable into a PR), chart.png and compare.json into --out (default RUN_AFTER/compare).
Exit 0: the gate holds; 1: a metric's interval reaches below -margin, or (--expect-identical) an answer
differs; 2: bad input (a missing run folder, different prompt sets)."""


def _register_run(sub: Any) -> None:
    run = sub.add_parser(
        "run", help="ask OpenAI-compatible servers the IFEval prompts, store and score the answers",
        description="Ask one or more OpenAI-compatible servers every IFEval prompt (bounded concurrency, "
        "retries, resumable), then score the answers.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=RUN_EXAMPLES,
    )
    run.add_argument("--base-url", action="append", required=True, dest="base_urls", metavar="URL",
                     help="server base URL ending in /v1 (repeat for several servers)")
    run.add_argument("--model", required=True, help="model name sent with each request")
    run.add_argument("--data", help=f"IFEval prompts (default: ${DATA_ENV}, else the hub's {HUB_DATASET})")
    run.add_argument("--out", required=True, type=output_folder, metavar="RUNDIR", help="run folder (created)")
    run.add_argument("--concurrency", type=positive_int, default=32, help="requests in flight (default 32)")
    run.add_argument("--max-tokens", type=positive_int, help="max_tokens of each request")
    run.add_argument("--temperature", type=non_negative_float, default=0.0, help="default 0 (greedy)")
    run.add_argument("--seed", type=int, help="sampling seed sent with each request")
    run.add_argument("--api-key-env", metavar="VAR", help="environment variable holding the API key")
    mode = run.add_mutually_exclusive_group()
    mode.add_argument("--chat", dest="mode", action="store_const", const="chat",
                      help="/v1/chat/completions (default)")
    mode.add_argument("--completions", dest="mode", action="store_const", const="completions",
                      help="/v1/completions with the raw prompt")
    run.add_argument("--system-prompt", metavar="TEXT", help="system message before each prompt (chat)")
    run.add_argument("--extra-body", type=_json_object, metavar="JSON",
                     help='extra request fields, e.g. \'{"chat_template_kwargs": {"enable_thinking": false}}\'')
    run.add_argument("--limit", type=positive_int, help="ask only the first N prompts")
    run.add_argument("--resume", action="store_true", help="continue the run in RUNDIR, asking only what is missing")
    run.add_argument("--stream", action="store_true", help="stream each answer (SSE) instead of one response")
    run.add_argument("--timeout", type=positive_float, default=600.0, help="seconds per request (default 600)")
    run.add_argument("--max-attempts", type=positive_int, default=6, help="attempts per prompt (default 6)")
    run.add_argument("--retry-backoff", type=non_negative_float, default=1.0,
                     help="first back-off in seconds, doubled per attempt, at most 30 (default 1)")
    run.add_argument("--set-aside-after", type=positive_int, default=5,
                     help="consecutive failures after which a server is set aside (default 5); it comes back "
                     "after a cool-down (--retry-backoff doubled per failed probe, at most --timeout) when a "
                     "probe request is answered, and is dropped only after --max-attempts failed probes in a row")
    run.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    run.set_defaults(func=_run_command, mode="chat")


def _register_compare(sub: Any) -> None:
    compare = sub.add_parser(
        "compare", help="paired before/after comparison of two runs, with a gate",
        description="Compare two run folders prompt by prompt: differences with paired-bootstrap intervals, "
        "exact McNemar tests, per-instruction gains and losses, and a gate.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=COMPARE_EXAMPLES,
    )
    compare.add_argument("before", metavar="RUN_BEFORE")
    compare.add_argument("after", metavar="RUN_AFTER")
    _add_test_options(compare)
    compare.add_argument("--expect-identical", action="store_true",
                         help="fail when any answer differs (greedy decoding of a bit-exact refactor)")
    compare.add_argument("--out", type=output_folder,
                         help="folder for report.md, chart.png, compare.json (default RUN_AFTER/compare)")
    compare.set_defaults(func=_compare_command)


def _add_test_options(parser: argparse.ArgumentParser) -> None:
    """The paired tests' options, shared by compare and history."""
    parser.add_argument("--margin", type=finite_float, default=1.0,
                        help="gate: fail when a lower bound of After - Before is below -margin points (default 1.0)")
    parser.add_argument("--alpha", type=probability, default=0.05, help="1 - confidence of the intervals (default 0.05)")
    parser.add_argument("--resamples", type=positive_int, default=2000, help="bootstrap resamples (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")


HISTORY_EXAMPLES = """examples:
  dsa-validate ifeval history runs/                                   # every run folder under runs/
  dsa-validate ifeval history runs/ --reference runs/2026-12-01      # against a pinned reference run
  dsa-validate ifeval history runs/a runs/b runs/c --out history/

Runs are ordered by the start of their first session (run.json). Writes history.md (both tables),
history.png (the trend, one panel per metric) and history.json into --out (default RUNS/history for a
folder of runs, else the newest run's folder/history). Exit 0: the newest run held against the
reference; 1: a lower bound of newest - reference is below -margin points on a metric; 2: bad input."""


def _register_history(sub: Any) -> None:
    history = sub.add_parser(
        "history", help="the runs in time order, each against the previous one and a reference, with a trend chart",
        description="The four metrics of each run with bootstrap intervals, oldest first; each run compared with "
        "the previous one and with a reference run by compare's paired tests; exit 1 when the newest run "
        "dropped against the reference.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=HISTORY_EXAMPLES,
    )
    history.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders, or a folder of run folders")
    history.add_argument("--reference", metavar="RUN", help="the pinned reference run (default: the oldest run)")
    _add_test_options(history)
    history.add_argument("--out", type=output_folder, help="folder for history.md, history.png, history.json")
    history.set_defaults(func=_history_command)


def _history_command(args: argparse.Namespace) -> int:
    from evals.ifeval import run_history
    from evals.ifeval import run_history_report as report

    result = run_history.history(args.runs, reference=args.reference, margin=args.margin, alpha=args.alpha,
                                 resamples=args.resamples, seed=args.seed)
    files = run_history.write(result, args.out or run_history.default_out(args.runs, result))
    print(report.metrics_table(result))
    print()
    print(report.comparisons_table(result))
    for line in report.skipped_lines(result):
        print(line)
    print(report.verdict_line(result))
    print(f"written: {files['table']}, {files['chart']}, {files['json']}")
    return 1 if result["verdict"]["dropped"] else 0


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


def run_ifeval(
    responses: str | os.PathLike[str],
    data_path: str | os.PathLike[str] | None = None,
    json_out: str | os.PathLike[str] | None = None,
    details_out: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Score ``responses`` against the prompts, write the requested files, return the report."""
    from evals.ifeval import data, scoring

    prompts = data.load_prompts(data_path)
    report = scoring.score(prompts, data.load_responses(responses, prompts))
    if json_out:
        atomic_file.write_text(json_out, scoring.to_json(report))
    if details_out:
        lines = (json.dumps(d, sort_keys=True, ensure_ascii=False) + "\n" for d in report["details"])
        atomic_file.write_text(details_out, "".join(lines))
    return report


SHOWN_ITEMS = 10  # a list longer than this is summarised on the terminal (count, first few, where it all is)


def format_table(report: dict[str, Any], full_lists: str | None = None) -> str:
    """The four metrics as a small table, plus what was missing or unknown; a long list is shown as its count and
    first ``SHOWN_ITEMS`` entries, with ``full_lists`` (a file holding them all) named."""
    from evals.ifeval import scoring

    width = max(len(n) for n in scoring.METRIC_NAMES)
    rows = [f"{'metric':<{width}}  accuracy (%)", f"{'-' * width}  ------------"]
    rows += [f"{name:<{width}}  {value:12.2f}" for name, value in report["metrics"].items()]
    counts = report["counts"]
    rows.append(f"{counts['prompts']} prompts, {counts['instructions']} instructions, "
                f"{counts['responses_matched']} responses matched")
    if report["missing_responses"]:
        rows.append(_listed("missing responses (counted as not followed), keys", report["missing_responses"],
                            full_lists))
    if report["unknown_responses"]:
        rows.append(_listed("responses matching no prompt, lines", [u["line"] for u in report["unknown_responses"]],
                            full_lists))
    return "\n".join(rows)


def _listed(label: str, items: list[Any], full_lists: str | None) -> str:
    if len(items) <= SHOWN_ITEMS:
        return f"{label}: {', '.join(map(str, items))}"
    where = f"; all of them in {full_lists}" if full_lists else ""
    return f"{label}: {len(items)}, first {SHOWN_ITEMS}: {', '.join(map(str, items[:SHOWN_ITEMS]))}, ...{where}"


def _score_command(args: argparse.Namespace) -> int:
    report = run_ifeval(args.responses, args.data, args.json_out, args.details_out)
    print(format_table(report, _full_lists(report, args.responses, args.json_out)))
    return 0


def _full_lists(report: dict[str, Any], responses: str, json_out: str | None) -> str | None:
    """Where the whole missing/unknown lists can be read when the terminal shows only their start: the report
    ``--json-out`` wrote (``missing_responses``, ``unknown_responses``), else a file written next to the responses
    (or in the temporary folder when that one is read-only)."""
    if max(len(report["missing_responses"]), len(report["unknown_responses"])) <= SHOWN_ITEMS:
        return None
    if json_out:
        return f"{json_out} (missing_responses, unknown_responses)"
    from evals.ifeval.store import write_json_atomic

    lists = {"missing_responses": report["missing_responses"],
             "unknown_lines": [u["line"] for u in report["unknown_responses"]]}
    for folder in (Path(responses).resolve().parent, Path(tempfile.gettempdir())):
        target = folder / f"{Path(responses).name}.unmatched.json"
        try:
            write_json_atomic(target, lists)
        except OSError:
            continue
        return str(target)
    return None


def _run_command(args: argparse.Namespace) -> int:
    from evals.ifeval import client

    settings = client.Settings(
        base_urls=args.base_urls, model=args.model, out=str(args.out), data=args.data, mode=args.mode,
        concurrency=args.concurrency, max_tokens=args.max_tokens, temperature=args.temperature, seed=args.seed,
        api_key_env=args.api_key_env, system_prompt=args.system_prompt, extra_body=args.extra_body,
        limit=args.limit, resume=args.resume, stream=args.stream, timeout_s=args.timeout,
        max_attempts=args.max_attempts, backoff_s=args.retry_backoff, set_aside_after=args.set_aside_after,
        progress=args.progress,
    )
    summary = client.run(settings)
    print(format_run(summary))
    return 1 if summary["missing"] else 0


def format_run(summary: dict[str, Any]) -> str:
    """The four metrics, then what the run did: answers, truncations, retries, servers, failures."""
    outcome = summary["outcome"]
    rows = [format_table(summary["report"])]
    rows.append(f"this run: asked {outcome.asked}, answered {outcome.answered}, failed {len(outcome.failed)}; "
                f"{outcome.wall_seconds:.1f} s")
    if summary["truncated"]:
        rows.append(f"truncated (finish_reason=length): {len(summary['truncated'])}, keys: "
                    f"{', '.join(map(str, summary['truncated'][:20]))}{' ...' if len(summary['truncated']) > 20 else ''}")
    if outcome.errors:
        rows.append("failed attempts by kind: " + ", ".join(f"{k} {v}" for k, v in sorted(outcome.errors.items()))
                    + "; retried: " + (", ".join(f"{k} {v}" for k, v in sorted(outcome.retries.items())) or "none"))
    for server in outcome.servers:
        if server["came_back"]:
            rows.append(f"server came back: {server['url']} (set aside {server['times_set_aside']} times, back "
                        f"{server['came_back']} times after a probe)")
        if server["set_aside"]:
            rows.append(f"server set aside at the end: {server['url']} ({server['set_aside']})")
    for failure in outcome.failed[:20]:
        reasons = "; ".join(dict.fromkeys(failure["errors"]))
        rows.append(f"FAILED key {failure['key']} after {failure['attempts']} attempts: {reasons[:300]}")
    if len(outcome.failed) > 20:
        rows.append(f"... and {len(outcome.failed) - 20} more failed prompts")
    if summary["missing"]:
        rows.append(f"{len(summary['missing'])} prompts unanswered (see {summary['folder']}/failures.jsonl); "
                    f"run again with --resume")
    return "\n".join(rows)


def _compare_command(args: argparse.Namespace) -> int:
    from evals.ifeval import comparison

    result = comparison.compare_runs(args.before, args.after, margin=args.margin, alpha=args.alpha,
                                  expect_identical=args.expect_identical, resamples=args.resamples,
                                  seed=args.seed, out=args.out)
    print(comparison.format_summary(result))
    return 0 if result["gate"]["passed"] else 1
