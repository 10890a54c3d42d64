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

EXAMPLES = """examples:
  dsa-validate serve                                   # single_step, block size 64, capture padding, 127.0.0.1:8188
  dsa-validate serve --slot-mapping legacy --padding none --port 8189
  DSA_KEY=secret dsa-validate serve --api-key-env DSA_KEY
  curl -s localhost:8188/v1/chat/completions -H 'Content-Type: application/json' \\
      -d '{"model": "smollm2-135m-dsa-single_step", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8}'

Decoding is greedy: temperature and top_p are accepted but do not change the answer."""


def register(subparsers: Any) -> None:
    """Add ``serve`` to the ``dsa-validate`` parser."""
    parser = subparsers.add_parser(
        "serve", help="serve the engine over the OpenAI API (chat and completions, streaming and not)",
        description="An OpenAI-compatible server over the SmolLM2 DSA engine, for IFEval runs before and after a "
                    "slot-mapping change.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES,
    )
    parser.add_argument("--slot-mapping", default="single_step",
                        help="slot-mapping implementation: a registry name, module:NAME or file.py:NAME "
                             "(default: single_step)")
    parser.add_argument("--block-size", type=positive_int, default=64, help="KV-cache block size (64)")
    parser.add_argument("--padding", choices=("none", "capture", "overlap"), default="capture",
                        help="step padding, as a CUDA-graph replay pads (default: capture)")
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
                                      "prefix_caching": args.prefix_caching}
    if args.max_num_batched_tokens is not None:
        options["max_num_batched_tokens"] = args.max_num_batched_tokens
    return options


def _serve(args: argparse.Namespace) -> int:
    for module, package in (("fastapi", "fastapi"), ("uvicorn", "uvicorn"), ("paddle", "paddlepaddle")):
        if importlib.util.find_spec(module) is None:
            raise MissingDependency(package, "serve" if module != "paddle" else "cpu", "dsa-validate serve")
    from evals.serve.server import ServerConfig, is_loopback, serve_forever

    api_key = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            raise InputError("--api-key-env", f"environment variable {args.api_key_env} is unset or empty")
    config = ServerConfig(slot_mapping=args.slot_mapping, block_size=args.block_size, padding=args.padding,
                          top_k=args.top_k, host=args.host, port=args.port, api_key=api_key,
                          model_name=args.model_name, engine_options=_engine_options(args))
    if not is_loopback(args.host):
        print(f"warning: binding {args.host}:{args.port}: the server is reachable from other machines"
              + ("" if api_key else " and requires no API key (--api-key-env)"), file=sys.stderr)
    print(f"serving {config.served_model} "
          f"(slot mapping {args.slot_mapping}, block size {args.block_size}, padding {args.padding}; "
          f"greedy decoding){'; API key required' if api_key else ''}", file=sys.stderr, flush=True)
    serve_forever(config)
    return 0
