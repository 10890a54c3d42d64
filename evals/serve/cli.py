"""``dsa-validate serve``: the engine behind an OpenAI-compatible HTTP server (see evals.serve.server).

Import-light: fastapi, uvicorn and paddle are imported only when the command runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from typing import Any

from validation.options import positive_int
from validation.errors import InputError, MissingDependency

# The context a plain ``serve`` accepts (prompt + completion): IFEval's prompts and 1,280-token answers fit, and the
# CPU engine's prefill of a prompt this long stays in tens of seconds (BENCHMARKS.md), where 8,100 tokens took minutes.
MAX_MODEL_LEN = 2048
# A long prompt's share of each step's 256-token budget: the rest admits newcomers, and the steps a long prefill
# shares with other requests stay short (each costs about its chunk times the context).
LONG_PREFILL_CHUNK = 64

EXAMPLES = """examples:
  dsa-validate serve                                   # oracle slots, no padding, block size 64, 127.0.0.1:8188
  dsa-validate serve --slot-mapping legacy --port 8189
  dsa-validate serve --slot-mapping single_step --padding capture   # serves #7367's stale-tail bug, on purpose
  DSA_KEY=secret dsa-validate serve --api-key-env DSA_KEY
  curl -s localhost:8188/v1/chat/completions -H 'Content-Type: application/json' \\
      -d '{"model": "smollm2-135m-dsa-oracle", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8}'

Decoding is greedy: temperature and top_p are accepted but do not change the answer. The start-up banner says which
path and padding are served and which known finding (fixtures/known_findings.json) applies to them. Limits: a body
over --max-body-bytes is a 413; a prompt plus completion over --max-model-len tokens is a 400
context_length_exceeded; at most 4 stop strings of 256 characters; SIGTERM answers in-flight requests (stream error
event, 503) and exits 0 within --drain-seconds."""


def register(subparsers: Any) -> None:
    """Add ``serve`` to the ``dsa-validate`` parser."""
    parser = subparsers.add_parser(
        "serve", help="serve the engine over the OpenAI API (chat and completions, streaming and not)",
        description="An OpenAI-compatible server over the SmolLM2 DSA engine, for IFEval runs before and after a "
                    "slot-mapping change.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES,
    )
    parser.add_argument("--slot-mapping", default="oracle",
                        help="slot-mapping implementation: a registry name, module:NAME or file.py:NAME "
                             "(default: oracle, the independent truth)")
    parser.add_argument("--block-size", type=positive_int, default=64, help="KV-cache block size (64)")
    parser.add_argument("--padding", choices=("none", "capture", "overlap"), default="none",
                        help="step padding, as a CUDA-graph replay pads (default: none; capture or overlap with a "
                             "#7367 path serves its stale-tail bug)")
    parser.add_argument("--top-k", type=positive_int, default=None,
                        help="tokens the lightning indexer keeps per query (default: the engine's)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default: 127.0.0.1; anything else is reachable from elsewhere)")
    parser.add_argument("--port", type=_port, default=8188, help="port (default: 8188; 0 picks a free one)")
    parser.add_argument("--api-key-env", metavar="VAR",
                        help="require 'Authorization: Bearer <key>', the key read from environment variable VAR")
    parser.add_argument("--max-num-seqs", type=positive_int, default=32,
                        help="requests batched in one step (default: 32)")
    parser.add_argument("--max-num-batched-tokens", type=positive_int, default=None,
                        help="tokens per step, prefill chunks included (default: the engine's)")
    parser.add_argument("--chunked-prefill", action=argparse.BooleanOptionalAction, default=True,
                        help="split long prefills over steps (default: on; off, answers stop depending on the batch "
                        "under the v1 position op's chunked-prefill bug)")
    parser.add_argument("--prefix-caching", action=argparse.BooleanOptionalAction, default=True,
                        help="start requests from cached full blocks they share (default: on)")
    parser.add_argument("--model-name", help="name to serve the model under (default: smollm2-135m-dsa-<slot-mapping>)")
    parser.add_argument("--max-model-len", type=positive_int, default=MAX_MODEL_LEN,
                        help=f"tokens a request may hold, prompt and completion (default: {MAX_MODEL_LEN}: the CPU "
                             "engine prefills a longer prompt for minutes, stalling every other client)")
    parser.add_argument("--long-prefill-chunk", type=positive_int, default=LONG_PREFILL_CHUNK,
                        help=f"most prompt tokens one request prefills in a step (default: {LONG_PREFILL_CHUNK}), so "
                             "a request arriving during a long prefill is admitted at once")
    parser.add_argument("--max-body-bytes", type=positive_int, default=None,
                        help="largest request body; a larger one is a 413 before it is parsed (default: 1 MiB)")
    parser.add_argument("--drain-seconds", type=positive_int, default=None,
                        help="after SIGTERM, how long in-flight responses get to flush (default: 5)")
    parser.set_defaults(func=_serve)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--port must be an integer, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"--port must lie in [0, 65535], got {value}")
    return value


def _engine_options(args: argparse.Namespace) -> dict[str, int | bool]:
    options: dict[str, int | bool] = {"max_num_seqs": args.max_num_seqs, "chunked_prefill": args.chunked_prefill,
                                      "prefix_caching": args.prefix_caching, "max_model_len": args.max_model_len,
                                      "long_prefill_chunk": args.long_prefill_chunk}
    if args.max_num_batched_tokens is not None:
        options["max_num_batched_tokens"] = args.max_num_batched_tokens
    return options


def _serve(args: argparse.Namespace) -> int:
    for module, package in (("fastapi", "fastapi"), ("uvicorn", "uvicorn"), ("paddle", "paddlepaddle")):
        if importlib.util.find_spec(module) is None:
            raise MissingDependency(package, "serve" if module != "paddle" else "cpu", "dsa-validate serve")
    from evals.serve.server import ServerConfig, is_loopback, serve_forever
    from evals.serve.startup_banner import banner

    api_key = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            raise InputError("--api-key-env", f"environment variable {args.api_key_env} is unset or empty")
    limits = {"max_body_bytes": args.max_body_bytes, "drain_s": args.drain_seconds}
    config = ServerConfig(slot_mapping=args.slot_mapping, block_size=args.block_size, padding=args.padding,
                          top_k=args.top_k, host=args.host, port=args.port, api_key=api_key,
                          model_name=args.model_name, engine_options=_engine_options(args),
                          **{k: v for k, v in limits.items() if v is not None})
    if not is_loopback(args.host):
        print(f"warning: binding {args.host}:{args.port}: the server is reachable from other machines"
              + ("" if api_key else " and requires no API key (--api-key-env)"), file=sys.stderr)
    for line in banner(config.served_model, args.slot_mapping, args.block_size, args.padding, args.max_model_len,
                       bool(api_key)):
        print(line, file=sys.stderr, flush=True)
    serve_forever(config)
    return 0
