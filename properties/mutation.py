"""Mutation testing: run the property suite against each seeded bug and measure how fast it dies.

A validation suite that has never been seen to fail proves nothing. For each mutant this runs the
properties with the mutant as candidate, first against the oracle (the kill criterion) and then
against the right baseline (a correct built-in path, to see whether plain equivalence would have
caught it too), through the same ``run_fuzz`` API and plug-in seam as any outside candidate.

Defence layers, tried in order until one kills: ``single state`` (the truth property on generated
states at the configured block sizes), ``multi-step`` (the scheduler state machine, one candidate
instance across steps) and ``block-size sweep`` (truth at block sizes 1 ... 256). A catalogue
mutant declares the layer that can reach it and starts there; an outside candidate tries them all.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from properties import profiles
from properties.fuzz import FuzzResult, run_fuzz
from validation.impls import mutants

RIGHT_BASELINE = "get_position_ids"
MUTANT_MODULE = "validation.impls.mutants"


@dataclass(frozen=True)
class Layer:
    """One layer of defence: which properties run, and whether block sizes are swept."""

    name: str
    properties: tuple[str, ...]
    sweep: bool = False


LAYERS = (
    Layer("single state", ("truth", "invariants")),
    Layer("multi-step", (profiles.MACHINE,)),
    Layer("block-size sweep", ("truth",), sweep=True),
)
REACH_TO_LAYER = {"one state": "single state", "multi-step": "multi-step", "block-size sweep": "block-size sweep"}


@dataclass
class MutantOutcome:
    """What the suite did to one mutant."""

    name: str
    spec: str
    bug_class: int | None
    description: str
    killed: bool
    layer: str | None
    property: str | None
    examples_to_kill: int | None
    seconds_to_kill: float | None
    seconds_total: float
    counterexample: dict[str, Any] | None
    counterexample_path: str | None
    killed_by_baseline: bool | None  # the same layer against RIGHT_BASELINE (BASELINE_EXAMPLES) failed it too

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def catalogue_specs(names: Sequence[str] | None = None) -> list[str]:
    """Seam specs of the catalogue's mutants (all, or the named ones)."""
    chosen = list(names) if names else list(mutants.MUTANTS)
    return [f"{MUTANT_MODULE}:{name}" for name in chosen]


def _layers_for(spec: str) -> tuple[Layer, ...]:
    cls = mutants.MUTANTS.get(spec.rpartition(":")[2]) if spec.startswith(MUTANT_MODULE + ":") else None
    if cls is None:
        return LAYERS
    first = REACH_TO_LAYER[cls.reach]
    return tuple(layer for layer in LAYERS if layer.name == first)


# The second opinion (equivalence against the right baseline) is informational: a bounded look.
BASELINE_EXAMPLES = 200


def _run_layer(baseline: str, spec: str, layer: Layer, profile: str, block_sizes: Sequence[int] | None,
               backend: str, out_dir: str, max_examples: int | None = None) -> FuzzResult:
    # This process: the properties run in order and stop at the first kill, which is what is timed (a worker's
    # start-up, a fresh Paddle import for a plug-in, would be most of it).
    return run_fuzz(baseline, spec, profile=profile, block_sizes=block_sizes, sweep=layer.sweep, backend=backend,
                    properties=layer.properties, stop_at_first_failure=True, out_dir=out_dir,
                    max_examples=max_examples, in_process=True)


def run_mutant(spec: str, *, profile: str = "ci", block_sizes: Sequence[int] | None = None,
               backend: str = "paddle", out_dir: str = ".dsa/mutants", check_baseline: bool = True) -> MutantOutcome:
    """Hunt one mutant through its layers of defence; stop at the first kill."""
    name = spec.rpartition(":")[2]
    cls = mutants.MUTANTS.get(name) if spec.startswith(MUTANT_MODULE + ":") else None
    started = time.perf_counter()
    outcome = MutantOutcome(name, spec, cls.bug_class if cls else None, cls.description if cls else "outside candidate",
                            False, None, None, None, None, 0.0, None, None, None)
    spent_examples, spent_seconds = 0, 0.0
    for layer in _layers_for(spec):
        result = _run_layer("oracle", spec, layer, profile, block_sizes, backend, f"{out_dir}/{name}")
        for prop, stats in result.properties.items():
            if stats.failed and stats.examples_to_failure is not None:
                outcome.killed, outcome.layer, outcome.property = True, layer.name, prop
                outcome.examples_to_kill = spent_examples + stats.examples_to_failure
                outcome.seconds_to_kill = round(spent_seconds + (stats.seconds_to_failure or 0.0), 3)
                outcome.counterexample = stats.counterexample
                outcome.counterexample_path = None if stats.path is None else str(stats.path)
                break
            spent_examples += stats.examples
            spent_seconds += stats.seconds
        if outcome.killed:
            if check_baseline:
                again = _run_layer(RIGHT_BASELINE, spec, layer, profile, block_sizes, backend, f"{out_dir}/{name}-baseline",
                                   max_examples=BASELINE_EXAMPLES)
                outcome.killed_by_baseline = bool(again.failed)
            break
    outcome.seconds_total = round(time.perf_counter() - started, 3)
    return outcome


def run_mutants(specs: Sequence[str], *, progress: Callable[[str], None] | None = None, **options: Any) -> list[MutantOutcome]:
    outcomes = []
    for spec in specs:
        outcome = run_mutant(spec, **options)
        outcomes.append(outcome)
        if progress:
            state = f"killed by {outcome.property} ({outcome.layer}) after {outcome.examples_to_kill} examples, " \
                    f"{outcome.seconds_to_kill:.2f}s" if outcome.killed else "SURVIVED"
            progress(f"{outcome.name}: {state}")
    return outcomes


def score(outcomes: Sequence[MutantOutcome]) -> dict[str, Any]:
    """Mutation score and the time-to-detection figures BENCHMARKS.md reports."""
    killed = [o for o in outcomes if o.killed]
    seconds = [o.seconds_to_kill for o in killed if o.seconds_to_kill is not None]
    examples = [o.examples_to_kill for o in killed if o.examples_to_kill is not None]
    return {
        "mutants": len(outcomes),
        "killed": len(killed),
        "score": round(len(killed) / len(outcomes), 4) if outcomes else None,
        "median_seconds_to_kill": round(statistics.median(seconds), 3) if seconds else None,
        "median_examples_to_kill": statistics.median(examples) if examples else None,
        "survivors": [o.name for o in outcomes if not o.killed],
    }
