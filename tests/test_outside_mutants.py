"""The ``ci`` profile kills the seeded bugs written after the catalogue (``fixtures/outside_mutants.py``).

Why: the catalogue was written with the properties, so its score could reflect tuning. These came later and
are hunted as outside candidates (every layer, against the oracle); one that survives names a class of bug
the pre-merge gate would let through.
"""

from __future__ import annotations

import pytest

import fixtures
from fixtures.outside_mutants import OUTSIDE_MUTANTS
from properties.mutation import run_mutant

MODULE = str(fixtures.ROOT / "outside_mutants.py")


def test_the_outside_set_is_the_twenty_three_written() -> None:
    assert len(OUTSIDE_MUTANTS) == 23 and "BoundedTailReset" in OUTSIDE_MUTANTS


@pytest.mark.parametrize("name", OUTSIDE_MUTANTS)
def test_each_outside_mutant_is_killed_under_ci(name: str, tmp_path) -> None:
    outcome = run_mutant(f"{MODULE}:{name}", profile="ci", out_dir=str(tmp_path), check_baseline=False)
    assert outcome.killed, f"{name} survived the ci profile"
    assert outcome.counterexample is not None and outcome.counterexample_path
