"""Builds the hypothesis tests of one configuration: the single-step properties and the machine.

Why a builder: the pytest modules (``properties/test_*.py``) and the runner (``dsa-validate fuzz``,
the mutation-testing API) need the same tests bound to different configurations and collectors.
Every single-step property carries the pinned SPEC section 5 cases as ``@example``s, and judges a batch of
states per hypothesis example (``strategies.case_batches``).
"""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import example, given
from hypothesis import seed as hypothesis_seed
from hypothesis.stateful import run_state_machine_as_test

from properties import profiles
from properties.checks import CHECKS
from properties.collector import Collector
from properties.config import FuzzConfig
from properties.examples import pinned_cases
from properties.machine import PropertyFailed, build_machine
from properties.strategies import Case, case_batches


def build_property(name: str, config: FuzzConfig, collector: Collector, *, profile: str = "dev",
                   max_examples: int | None = None, seed: int | None = None) -> Callable[[], None]:
    """A zero-argument hypothesis test for one property (``multi_step`` runs the state machine)."""
    settings = profiles.for_property(profile, name, max_examples, seed)
    if name == profiles.MACHINE:
        machine = build_machine(config, collector)

        def test_multi_step() -> None:
            run_state_machine_as_test(machine, settings=settings)

        return hypothesis_seed(seed)(test_multi_step) if seed is not None else test_multi_step

    check = CHECKS[name]

    def body(batch: list[Case]) -> None:
        for case in batch:  # the first failing state ends the example: hypothesis shrinks towards it alone
            report = check(case, config)
            if collector.record(name, case, report):
                raise PropertyFailed(f"{name}: {report.render(max_lines_per_group=4)}")

    body.__name__ = body.__qualname__ = f"test_{name}"
    test = given(batch=case_batches(config.block_sizes))(body)
    for pinned in reversed(pinned_cases()):
        test = example(batch=[pinned])(test)
    test = settings(test)
    return hypothesis_seed(seed)(test) if seed is not None else test
