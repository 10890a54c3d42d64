"""``dsa-validate e2e``: judge a slot-mapping implementation by what it does to a real model's logits and text.

One deterministic workload (``evals.e2e.workload``) runs three times in lockstep on one loaded model:
with the baseline's slots, the candidate's, and the oracle's (the truth). All three schedule identically
(every request generates exactly ``max_tokens``), so step ``s`` of one run is step ``s`` of the others.
Per step it triages the two sides' positions and slots with the core's rules (``validation.compare``:
REGRESSION / FIX / SHARED-BUG / OK, every layer and consumer), compares every request's logits bit for
bit, and follows each side's wrong cache entries (``evals.e2e.taint``) so each divergence is
explained by its cause. The report names the first divergence (step, request, layer, consumer, the slot
written and the cache entry it overwrote) and the effect on each affected request's text.

Exit status: 1 on a REGRESSION, 2 on bad input, 0 otherwise. An implementation that raises, returns
something unusable or writes past the cache is a finding against its side, not a crash.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from evals.e2e.e2e_options import DEFAULT_TOP_K, E2EOptions
from evals.e2e.harness import run_e2e
from validation import atomic_file
from validation.options import add_backend, add_sides, output_file


def register(subparsers: Any) -> None:
    from validation.launch_padding import PADDINGS
    from evals.e2e.workload import PLAN

    cmd = subparsers.add_parser(
        "e2e", help="run a small real model with baseline, candidate and oracle slots; compare logits and text",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__.split("\n\n")[1],
        epilog="exit status: 0 no regression, 1 a REGRESSION, 2 bad input\n"
        "examples:\n  dsa-validate e2e\n  dsa-validate e2e --candidate chunked_fix\n"
        "  dsa-validate e2e --block-size 16 --top-k 8\n  dsa-validate e2e --padding capture --json e2e.json\n"
        "  dsa-validate e2e --baseline oracle --candidate path/to/mine.py:MySlots")
    add_sides(cmd)
    cmd.add_argument("--block-size", type=int, default=64, help="KV cache block size (default: 64)")
    cmd.add_argument("--padding", choices=PADDINGS, default="none",
                     help="launch padding: none, capture (CUDA-graph sizes), overlap (estimate above the count)")
    cmd.add_argument("--top-k", type=int, default=DEFAULT_TOP_K,
                     help=f"tokens the indexer keeps per query (default: {DEFAULT_TOP_K}; large = dense)")
    cmd.add_argument("--requests", type=int, default=None, help=f"the first N requests of the workload (1-{len(PLAN)})")
    add_backend(cmd)
    cmd.add_argument("--independent", action="store_true",
                     help="compute all three runs in full (default: runs that are identical so far share a forward)")
    cmd.add_argument("--json", type=output_file, metavar="FILE", help="also write the machine-readable report here")
    cmd.set_defaults(func=_command)


def _command(args: argparse.Namespace) -> int:
    # Paddle's CPU build runs one thread unless told otherwise before it is imported.
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, str(os.cpu_count() or 1))
    options = E2EOptions(args.baseline, args.candidate, args.block_size, args.padding, args.top_k, args.requests,
                         args.backend, args.independent)
    result = run_e2e(options, progress=lambda line: print(line, file=sys.stderr, flush=True))
    if args.json:
        atomic_file.write_text(args.json, json.dumps(result.to_dict(), indent=1) + "\n")
    print(result.render())
    return result.exit_code
