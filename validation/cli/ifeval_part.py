"""Part 5 of the main job: IFEval before/after through two OpenAI-compatible servers.

It asks the same prompts of two servers, "before" (the baseline slot mapping) and "after" (the candidate), with
greedy decoding, and compares the runs with ``--expect-identical``: a refactor meant to be bit-exact must give the
same answer to every prompt. By default both servers are embedded (this package's engine on SmolLM2-135M, started
on free loopback ports in this process, sharing one copy of the weights); ``--before-url``/``--after-url`` point
the same part at real servers (FastDeploy's, for the nightly run on the full model). Every answer lands in the run
folder as it arrives (``evals.ifeval.store``), so a killed main job loses nothing and the folders can be compared
again with ``dsa-validate ifeval compare``.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fixtures
from validation.cli.job_parts import engine_missing
from validation.cli.part_outcome import Part
from validation.verdicts import PartStatus

SHARED_DATA = fixtures.ROOT.parent.parent / "shared" / "ifeval" / "input_data.jsonl"
SUBSET_SIZE = 24  # prompts of the fixed subset the embedded servers answer (--full: all of them)
EMBEDDED_MAX_TOKENS = 64  # enough for answers to differ if a cache entry is corrupted; small enough for 5 minutes
# Whole prefills, no prefix hits: under the v1 position op (legacy and single_step alike) a chunked or
# prefix-hit prefill gets positions that depend on the other requests in its batch (the SHARED-BUG that e2e
# reports), so answers would depend on arrival order and differ between two identical servers.
EMBEDDED_ENGINE = {"chunked_prefill": False, "prefix_caching": False, "max_num_seqs": 32, "max_num_batched_tokens": 2048}


@dataclass(frozen=True)
class IFEvalOptions:
    """What step 5 asks, of whom, and where its runs are kept."""

    baseline: str
    candidate: str
    out: Path
    before_url: str | None = None
    after_url: str | None = None
    model: str | None = None
    api_key_env: str | None = None
    full: bool = False
    max_tokens: int | None = None
    concurrency: int = 32
    data: str | None = None


def ifeval_part_from_args(args: argparse.Namespace) -> Part:
    """The main job's options, as this part's."""
    return ifeval_part(IFEvalOptions(args.baseline, args.candidate, args.out, args.before_url, args.after_url,
                                     args.model, args.api_key_env, args.full, args.max_tokens, data=args.data))


def prompts_for(options: IFEvalOptions) -> tuple[list[Any], str]:
    """The prompts step 5 asks and where they came from: the 541 when present (a fixed subset unless --full),
    else the shipped, self-written sample."""
    from evals.ifeval import data

    path = options.data or os.environ.get(data.DATA_ENV) or (str(SHARED_DATA) if SHARED_DATA.is_file() else None)
    if path:
        prompts = data.load_prompts(path)
        source = f"{len(prompts)} IFEval prompts from {path}"
    else:
        prompts = data.load_prompts(data.sample_paths()[0])
        source = f"the shipped {len(prompts)}-prompt sample (no IFEval data found)"
    if options.full or len(prompts) <= SUBSET_SIZE:
        return prompts, source
    step = len(prompts) / SUBSET_SIZE  # evenly spread, so every instruction family is likely asked
    return [prompts[int(i * step)] for i in range(SUBSET_SIZE)], f"a fixed subset of {SUBSET_SIZE} of {source}"


def ifeval_part(options: IFEvalOptions) -> Part:
    """Step 5: ask both sides, then compare them with the gate and ``--expect-identical``."""
    import importlib.util

    embedded = not options.before_url  # the main job has checked that both URLs, or neither, were given
    if embedded:
        reason = engine_missing()
        if reason:
            return Part.skipped("ifeval", reason)
    for module in ("httpx", "scipy", "matplotlib"):
        if importlib.util.find_spec(module) is None:
            return Part.skipped("ifeval", f"{module} is not installed (extra 'runner')")
    started = time.monotonic()
    prompts, source = prompts_for(options)
    servers: list[Any] = []
    try:
        if embedded:
            urls = [_start_embedded(options.baseline, servers), _start_embedded(options.candidate, servers)]
            models = [s.model for s in servers]
            max_tokens = options.max_tokens or EMBEDDED_MAX_TOKENS
        else:
            urls = [options.before_url, options.after_url]
            models = [options.model or _served_model(u, options.api_key_env) for u in urls]
            max_tokens = options.max_tokens
        runs = []
        for side, url, model in zip(("before", "after"), urls, models):
            runs.append(_ask(options, side, url, model, prompts, max_tokens))
    finally:
        for server in servers:
            server.stop()
    from evals.ifeval import comparison, comparison_report

    result = comparison.compare_runs(options.out / "before", options.out / "after", expect_identical=True,
                                  out=options.out / "compare")
    held = result["gate"]["passed"] and not any(r["missing"] for r in runs)
    who = (f"embedded servers {options.baseline} -> {options.candidate}" if embedded
           else f"{options.before_url} -> {options.after_url}")
    headline = (f"{len(prompts)} prompts ({source}), {who}, greedy, max_tokens {max_tokens or 'server default'}: "
                f"{result['identical_responses']}/{result['prompts']} responses identical")
    lines = comparison_report.table(result).splitlines()
    if result["differing_responses"]:
        lines.append(f"differing responses (keys): {', '.join(map(str, result['differing_responses'][:20]))}")
    for side, run in zip(("before", "after"), runs):
        if run["missing"]:
            lines.append(f"{side}: {len(run['missing'])} prompts got no answer (see {run['folder']}/run.json)")
    lines.append(f"runs kept in {options.out} (report: {result['files']['report']})")
    return Part("ifeval", PartStatus.HELD if held else PartStatus.FAILED, headline, lines, time.monotonic() - started)


@dataclass(frozen=True)
class _Embedded:
    """One server of this package's engine on a free loopback port, and the model name it serves."""

    base_url: str
    model: str
    stop: Any


def _start_embedded(slot_mapping: str, servers: list[_Embedded]) -> str:
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # Paddle's CPU build runs one thread unless told
        os.environ.setdefault(name, str(os.cpu_count() or 1))
    from evals.serve.server import ServerConfig, start_in_thread

    config = ServerConfig(slot_mapping=slot_mapping, block_size=64, padding="none", port=0,
                          engine_options=EMBEDDED_ENGINE)
    running = start_in_thread(config)
    servers.append(_Embedded(running.base_url, config.served_model, running.stop))
    return running.base_url


def _served_model(url: str, api_key_env: str | None) -> str:
    """The first model a server lists (``--model`` overrides it)."""
    import httpx

    from validation.errors import InputError

    headers = {"Authorization": f"Bearer {os.environ[api_key_env]}"} if api_key_env and api_key_env in os.environ else {}
    try:
        reply = httpx.get(url.rstrip("/") + "/models", headers=headers, timeout=30)
        reply.raise_for_status()
        return reply.json()["data"][0]["id"]
    except (httpx.HTTPError, KeyError, IndexError, ValueError) as exc:
        raise InputError("--model", f"cannot list the models of {url} ({type(exc).__name__}); pass --model") from None


def _ask(options: IFEvalOptions, side: str, url: str, model: str, prompts: list[Any],
         max_tokens: int | None) -> dict[str, Any]:
    import logging

    from evals.ifeval import client

    logging.getLogger("httpx").setLevel(logging.WARNING)  # Paddle's import sets the root logger to INFO
    settings = client.Settings(base_urls=[url], model=model, out=str(options.out / side), max_tokens=max_tokens,
                               temperature=0.0, seed=0, api_key_env=options.api_key_env,
                               concurrency=options.concurrency, resume=True, progress=False)
    return client.run(settings, prompts)
