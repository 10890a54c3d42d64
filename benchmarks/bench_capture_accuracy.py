"""What #7367's stale padding tail costs in IFEval accuracy: all 541 prompts, three embedded servers.

Why: ``e2e --padding capture`` shows that single_step's never-reset slot tail lets CUDA-graph padding rows
overwrite live cache entries and change greedy answers; this measures what that does to the four IFEval
metrics, and whether the proposed fix (``tail_reset``) gives back every legacy answer.

How: for each slot mapping in turn (``legacy``, ``single_step``, ``tail_reset``) one OpenAI-compatible server of
the embedded engine (SmolLM2-135M, ``evals.serve.server.start_in_thread``) is started in this process with
``padding="capture"`` and the main job's engine settings (whole prefills, no prefix cache, 32 rows, a 2048-token
budget), asked every prompt by ``ifeval run``'s client (greedy, ``--max-tokens``, ``--concurrency``), and
stopped before the next starts, so the sides never share the CPU. Each later side is then compared with legacy
by ``ifeval compare`` (paired bootstrap intervals, exact McNemar tests, per-instruction gains and losses). Runs
are kept (``--out``, default ``.dsa/capture_accuracy/<UTC time>``; an existing folder is resumed, so a killed
benchmark goes on where it stopped). Nightly work: about an hour on a shared 2-core machine.

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
    return parser.parse_args(argv)


def ask(side: str, args: argparse.Namespace, prompts: list[Any]) -> dict[str, Any]:
    """Start one embedded server for ``side``, ask it every prompt, stop it; the run's summary and time."""
    from evals.ifeval import client
    from evals.serve.server import ServerConfig, start_in_thread

    config = ServerConfig(slot_mapping=side, block_size=64, padding=args.padding, port=0,
                          engine_options=EMBEDDED_ENGINE)
    started = time.monotonic()
    server = start_in_thread(config)
    try:
        settings = client.Settings(base_urls=[server.base_url], model=config.served_model,
                                   out=str(args.out / side), max_tokens=args.max_tokens, temperature=0.0, seed=0,
                                   concurrency=args.concurrency, resume=True, progress=False)
        summary = client.run(settings, prompts)
    finally:
        server.stop()
    return {"summary": summary, "seconds": time.monotonic() - started}


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
    from evals.engine.model_runner import capture_sizes
    from evals.ifeval import comparison, comparison_report, data

    logging.getLogger("httpx").setLevel(logging.WARNING)
    args.out = args.out or Path(".dsa/capture_accuracy") / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    sides = args.sides.split(",")
    prompts = data.load_prompts(args.data)[:args.limit]
    budget = EMBEDDED_ENGINE["max_num_batched_tokens"]
    print(f"{len(prompts)} prompts from {args.data}; greedy (temperature 0, seed 0), max_tokens {args.max_tokens}, "
          f"concurrency {args.concurrency}; engine {EMBEDDED_ENGINE}, block size 64, padding {args.padding}"
          + (f" (capture sizes {capture_sizes(budget)})" if args.padding == "capture" else "")
          + f"; load {os.getloadavg()[0]:.2f}; runs in {args.out}", flush=True)
    started = time.monotonic()
    timings = {}
    for side in sides:
        run = ask(side, args, prompts)
        timings[side] = run["seconds"]
        summary = run["summary"]
        print(f"{side}: {len(prompts) - len(summary['missing'])}/{len(prompts)} answered, "
              f"{len(summary['truncated'])} truncated at max_tokens, {run['seconds']:.0f} s, "
              f"load {os.getloadavg()[0]:.2f}", flush=True)
    results = {}
    for side in sides[1:]:
        result = comparison.compare_runs(args.out / sides[0], args.out / side, out=args.out / f"compare-{side}")
        results[side] = result
        print(f"\n{sides[0]} -> {side}: {result['prompts'] - result['identical_responses']} of {result['prompts']} "
              f"answers differ from {sides[0]}")
        print(comparison_report.table(result))
        print("per-instruction changes:")
        print("\n".join(changed_instructions(result)))
    wall = time.monotonic() - started
    print(f"\nwall time {wall:.0f} s ({', '.join(f'{s} {t:.0f} s' for s, t in timings.items())}); "
          f"load {os.getloadavg()[0]:.2f}")
    summary = {"prompts": len(prompts), "max_tokens": args.max_tokens, "padding": args.padding,
               "engine": EMBEDDED_ENGINE, "seconds": timings, "wall_seconds": wall,
               "differing": {s: r["differing_responses"] for s, r in results.items()},
               "metrics": {s: r["metrics"] for s, r in results.items()}}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
