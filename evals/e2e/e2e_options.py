"""What one ``e2e`` run is asked to do, its defaults, and the one-line checks on them.

The workload's engine is kept small on purpose (a 320-token pool, 4 sequences, 64 tokens a step), so that the
default run preempts, chunks and shares prefixes within a minute on two cores.
"""

from __future__ import annotations

from dataclasses import dataclass

from validation.errors import InputError
from validation.options import DEFAULT_BASELINE, DEFAULT_CANDIDATE

DEFAULT_TOP_K = 32
POOL_TOKENS = 320  # the block pool: small, so the workload preempts
MAX_NUM_SEQS = 4
MAX_NUM_BATCHED_TOKENS = 64
LEGACY_INDEXER_BLOCK = 64  # the legacy indexer addresses the cache with 64-token blocks whatever the config
MAX_BLOCK_SIZE = 256



@dataclass(frozen=True)
class E2EOptions:
    baseline: str = DEFAULT_BASELINE
    candidate: str = DEFAULT_CANDIDATE
    block_size: int = 64
    padding: str = "none"
    top_k: int = DEFAULT_TOP_K
    requests: int | None = None  # the first N requests of the workload (default: all)
    backend: str = "paddle"
    independent: bool = False  # run every forward on its own (no sharing of identical work between the runs)


def check_options(options: E2EOptions) -> None:
    """Bad input is one ``InputError`` naming the option."""
    from validation.launch_padding import PADDINGS
    from evals.e2e.workload import PLAN
    from validation.seam import resolve

    if not 1 <= options.block_size <= MAX_BLOCK_SIZE:
        raise InputError("--block-size", f"must be in 1..{MAX_BLOCK_SIZE}, got {options.block_size}")
    if options.top_k < 1:
        raise InputError("--top-k", f"must be >= 1, got {options.top_k}")
    if options.requests is not None and not 1 <= options.requests <= len(PLAN):
        raise InputError("--requests", f"must be in 1..{len(PLAN)}, got {options.requests}")
    if options.padding not in PADDINGS:
        raise InputError("--padding", f"must be one of {', '.join(PADDINGS)}, got {options.padding!r}")
    resolve(options.baseline, backend=options.backend, field_name="--baseline")
    resolve(options.candidate, backend=options.backend, field_name="--candidate")
