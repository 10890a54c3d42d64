"""What #7367's stale padding tail costs in IFEval accuracy: all 541 prompts, three embedded servers.

Why: ``e2e --padding capture`` shows that single_step's never-reset slot tail lets CUDA-graph padding rows
overwrite live cache entries and change greedy answers; this measures what that does to the four IFEval
metrics, and whether the proposed fix (``tail_reset``) gives back every legacy answer.

How: one OpenAI-compatible server of the embedded engine (SmolLM2-135M, ``evals.serve.server.start_in_thread``)
per slot mapping (``legacy``, ``single_step``, ``tail_reset``), in this process, with ``padding="capture"`` and
the main job's engine settings (whole prefills, no prefix cache, 32 rows, a 2048-token budget). The prompts are
asked in rounds of ``--round`` prompts: each round asks every side in turn (``ifeval run``'s client: greedy,
``--max-tokens``, ``--concurrency``; one side at a time, so the sides never share the CPU), then every later
side is compared with the first by ``ifeval compare`` (paired bootstrap intervals, exact McNemar tests,
per-instruction gains and losses) on all prompts asked so far, and the figures are printed and written
(``summary.json``). So a benchmark stopped by a deadline still leaves a comparison of all sides on the same
prompts. Runs are kept (``--out``, default ``.dsa/capture_accuracy/<UTC time>``; an existing folder is resumed,
so a killed benchmark goes on where it stopped). Nightly work: hours on a shared 2-core machine.

    python benchmarks/bench_capture_accuracy.py                       # all 541 prompts
    python benchmarks/bench_capture_accuracy.py --limit 8 --out /tmp/capture-smoke
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from validation.cli.ifeval_part import EMBEDDED_ENGINE, EMBEDDED_MAX_TOKENS, SHARED_DATA

SIDES = ("legacy", "single_step", "tail_reset")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=os.environ.get("DSA_IFEVAL_DATA") or str(SHARED_DATA))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--sides", default=",".join(SIDES), help="slot mappings, the first is the baseline")
    parser.add_argument("--padding", default="capture")
    parser.add_argument("--max-tokens", type=int, default=EMBEDDED_MAX_TOKENS)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--limit", type=int, default=None, help="ask only the first N prompts (a smoke run)")
    parser.add_argument("--round", type=int, default=60, help="prompts per round (default 60)")
    return parser.parse_args(argv)


def start(side: str, args: argparse.Namespace) -> tuple[Any, str]:
    """One embedded server for ``side`` on a free loopback port: its handle and served model name."""
    from evals.serve.server import ServerConfig, start_in_thread

    config = ServerConfig(slot_mapping=side, block_size=64, padding=args.padding, port=0,
                          engine_options=EMBEDDED_ENGINE)
    return start_in_thread(config), config.served_model


def ask(side: str, server: Any, model: str, args: argparse.Namespace, prompts: list[Any]) -> dict[str, Any]:
    """Ask ``side``'s server every prompt its run folder lacks; the run's summary."""
    from evals.ifeval import client

    settings = client.Settings(base_urls=[server.base_url], model=model, out=str(args.out / side),
                               max_tokens=args.max_tokens, temperature=0.0, seed=0, concurrency=args.concurrency,
                               resume=True, progress=False)
    return client.run(settings, prompts)


def changed_instructions(result: dict[str, Any]) -> list[str]:
    """Per instruction id with any gain or loss: strict and loose accuracy before -> after, with the keys."""
    lines = []
    for name, entry in result["per_instruction"].items():
        moved = {f"{kind}_{mode}": entry[f"{kind}_{mode}"] for kind in ("gains", "losses")
                 for mode in ("strict", "loose") if entry[f"{kind}_{mode}"]}
        if moved:
            lines.append(f"  {name} (n={entry['count']}): strict {entry['before_strict']:.1f} -> "
                         f"{entry['after_strict']:.1f}, loose {entry['before_loose']:.1f} -> "
                         f"{entry['after_loose']:.1f}; " + "; ".join(f"{k} {v}" for k, v in moved.items()))
    return lines or ["  none"]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # Paddle's CPU build runs one thread unless told
        os.environ.setdefault(name, str(os.cpu_count() or 1))
    from validation.launch_padding import capture_sizes
    from evals.ifeval import data

    logging.getLogger("httpx").setLevel(logging.WARNING)
    args.out = args.out or Path(".dsa/capture_accuracy") / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    sides = args.sides.split(",")
    prompts = data.load_prompts(args.data)[:args.limit]
    print(f"{len(prompts)} prompts from {args.data}; greedy (temperature 0, seed 0), max_tokens {args.max_tokens}, "
          f"concurrency {args.concurrency}; engine {EMBEDDED_ENGINE}, block size 64, padding {args.padding}"
          + (f" (capture sizes {capture_sizes(EMBEDDED_ENGINE['max_num_seqs'])})" if args.padding == "capture" else "")
          + f"; load {os.getloadavg()[0]:.2f}; runs in {args.out}", flush=True)
    started = time.monotonic()
    timings = dict.fromkeys(sides, 0.0)
    servers = {side: start(side, args) for side in sides}
    try:
        for end in range(min(args.round, len(prompts)), len(prompts) + args.round, args.round):
            asked = prompts[:end]
            for side in sides:
                began = time.monotonic()
                summary = ask(side, *servers[side], args, asked)
                timings[side] += time.monotonic() - began
                print(f"{side}: {len(asked) - len(summary['missing'])}/{len(asked)} answered, "
                      f"{len(summary['truncated'])} truncated at max_tokens, {timings[side]:.0f} s so far, "
                      f"load {os.getloadavg()[0]:.2f}", flush=True)
            report(args, sides, len(asked), timings, time.monotonic() - started)
            if end >= len(prompts):
                break
    finally:
        for server, _ in servers.values():
            server.stop()
    return 0


def report(args: argparse.Namespace, sides: list[str], asked: int, timings: dict[str, float], wall: float) -> None:
    """Each later side against the first on the prompts asked so far: printed, and written to summary.json."""
    from evals.ifeval import comparison, comparison_report

    results = {}
    for side in sides[1:]:
        result = comparison.compare_runs(args.out / sides[0], args.out / side, out=args.out / f"compare-{side}")
        results[side] = result
        print(f"\n{sides[0]} -> {side} on {result['prompts']} prompts: "
              f"{result['prompts'] - result['identical_responses']} answers differ from {sides[0]}")
        print(comparison_report.table(result))
        print("per-instruction changes:")
        print("\n".join(changed_instructions(result)))
    print(f"\n{asked} prompts: wall time {wall:.0f} s ({', '.join(f'{s} {t:.0f} s' for s, t in timings.items())}); "
          f"load {os.getloadavg()[0]:.2f}", flush=True)
    summary = {"prompts": asked, "max_tokens": args.max_tokens, "padding": args.padding, "engine": EMBEDDED_ENGINE,
               "seconds": timings, "wall_seconds": wall,
               "differing": {s: r["differing_responses"] for s, r in results.items()},
               "metrics": {s: r["metrics"] for s, r in results.items()}}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
