"""Hypothesis settings profiles (dev, ci, nightly), per-property example budgets, and the example
database (a directory, or Redis for a fleet of CI machines sharing failures).

Why per-property budgets: one equivalence example costs two implementations, a truth example about
one; the ``ci`` budget is split so that all properties together make >= 5,000 states in <= 60 s on
two cores. The scenarios each profile must reach are listed here too: a fuzz run that never
generated one of them has not tested it, and says so with exit 1.
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, Phase, settings
from hypothesis.database import DirectoryBasedExampleDatabase, ExampleDatabase

from properties.strategies import BATCH_STATES
from validation.errors import InputError

REDIS_ENV = "DSA_HYPOTHESIS_REDIS"
PROFILE_NAMES = ("dev", "ci", "nightly")
MACHINE = "multi_step"
PROPERTIES = ("equivalence", "truth", "invariants", "determinism", MACHINE)

# Examples per property (for ``multi_step``: runs of up to ``STEPS`` steps each). Every run first replays the
# server's start-up through both sides (about 20 calls that no property counts), so ``ci`` runs 100 runs of up to
# 20 steps rather than 200 of 10: more checked steps per start-up (in process, 444 steps for 3,278 calls against
# 428 for 5,282; BENCHMARKS.md, "States per CPU-second").
BUDGETS: dict[str, dict[str, int]] = {
    "dev": {"equivalence": 60, "truth": 60, "invariants": 40, "determinism": 20, MACHINE: 10},
    "ci": {"equivalence": 800, "truth": 800, "invariants": 1700, "determinism": 1200, MACHINE: 100},
    "nightly": {"equivalence": 20000, "truth": 20000, "invariants": 10000, "determinism": 2000, MACHINE: 2000},
}
STEPS = {"dev": 10, "ci": 20, "nightly": 40}
# Milliseconds per state (for the machine: per run of the ci profile's STEPS steps), to split the properties over
# worker processes evenly and a time budget over the properties (only their ratios matter). Medians of 3 whole
# ``dsa-validate fuzz --profile ci --json`` commands on a 2-core machine, 2026-12-07:
# ``benchmarks/bench_properties.py --costs --repeats 3`` (log benchmarks/results/property_costs.txt).
COST = {"equivalence": 1.84, "truth": 1.67, "invariants": 1.13, "determinism": 1.54, MACHINE: 16.2}

# Scenarios a run of the profile must generate (``event()`` names), or it fails.
REQUIRED: dict[str, frozenset[str]] = {
    "dev": frozenset(),
    "ci": frozenset({
        "phase:prefill", "phase:chunked", "phase:prefix_hit", "phase:decode", "phase:mtp", "phase:idle",
        "phase:empty", "mixed_phases", "padding:capture", "padding:overlap", "batch:over_launch_limit",
        "block_id:int32_overflow", "position:crosses_block", "context:long", "multi_step",
    }),
}
REQUIRED["nightly"] = REQUIRED["ci"] | {"mtp:draft_crosses_block", "empty_batch", "context:near_max"}
# Scenarios no state of a block size can show, so a run is not held to them there: with one token per block
# no position crosses a block, and ``id * 1 + 0`` never exceeds the largest int32 block id.
IMPOSSIBLE_AT: dict[int, frozenset[str]] = {
    1: frozenset({"position:crosses_block", "mtp:draft_crosses_block", "block_id:int32_overflow"}),
}


def required_at(profile: str, block_size: int) -> frozenset[str]:
    """The scenarios a run of ``profile`` must generate at ``block_size``."""
    return REQUIRED.get(profile, frozenset()) - IMPOSSIBLE_AT.get(block_size, frozenset())

# Hypothesis' explain phase re-runs a shrunk failure many times under a line tracer to annotate which parts
# of the example could vary. The suite reports its own minimal state and check line instead, and the phase was
# most of what a failure cost: a multi_step failure took 74-78 s with it, 6 s without, and the ``mutants``
# command 83 s against 17 s (medians of 3; benchmarks/results/explain_phase_off.txt).
_COMMON = {
    "deadline": None,
    "phases": tuple(phase for phase in Phase if phase is not Phase.explain),
    "suppress_health_check": (HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much),
}


def example_database() -> ExampleDatabase:
    """Redis when ``DSA_HYPOTHESIS_REDIS`` is set (``redis://host:port/db``), else the local directory."""
    url = os.environ.get(REDIS_ENV)
    if not url:
        return DirectoryBasedExampleDatabase(Path(".hypothesis") / "examples")
    try:
        import redis  # noqa: PLC0415 - optional extra
        from hypothesis.extra.redis import RedisExampleDatabase  # noqa: PLC0415
    except ImportError:
        raise InputError(REDIS_ENV, "needs the redis client: pip install 'dsa-validation[fleet]'") from None
    return RedisExampleDatabase(redis.Redis.from_url(url), key_prefix=b"dsa-validation:")


def register() -> None:
    """Register the three profiles with hypothesis (idempotent)."""
    settings.register_profile("dev", max_examples=BUDGETS["dev"]["equivalence"], database=None, **_COMMON)
    settings.register_profile("ci", max_examples=BUDGETS["ci"]["equivalence"], derandomize=True,
                              print_blob=True, database=None, **_COMMON)
    settings.register_profile("nightly", max_examples=BUDGETS["nightly"]["equivalence"],
                              database=example_database(), **_COMMON)


def for_property(profile: str, name: str, max_examples: int | None = None, seed: int | None = None) -> settings:
    """The settings one property runs under in ``profile``; ``max_examples`` overrides the budget."""
    if profile not in PROFILE_NAMES:
        raise InputError("profile", f"unknown profile {profile!r} (choose from: {', '.join(PROFILE_NAMES)})")
    register()
    states = max_examples or BUDGETS[profile][name]
    # A single-step example is a batch of BATCH_STATES states: the budget counts states, as before.
    extra: dict = {"max_examples": states if name == MACHINE else -(-states // BATCH_STATES)}
    if name == MACHINE:
        extra["stateful_step_count"] = STEPS[profile]
    if seed is not None:  # a seed replaces derandomisation by one fixed, chosen seed
        extra["derandomize"] = False
    return settings(settings.get_profile(profile), **extra)
