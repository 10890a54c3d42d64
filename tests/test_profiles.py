"""The hypothesis settings each profile gives a property: what they run and what they skip."""

from __future__ import annotations

import pytest
from hypothesis import Phase

from properties import profiles


@pytest.mark.parametrize("profile", profiles.PROFILE_NAMES)
@pytest.mark.parametrize("name", profiles.PROPERTIES)
def test_a_failure_is_shrunk_but_not_explained(profile: str, name: str) -> None:
    """The explain phase was most of a failure's cost and its notes are never shown: it stays off; shrinking
    stays on, or a counterexample would be reported as first found."""
    phases = profiles.for_property(profile, name).phases
    assert Phase.shrink in phases and Phase.generate in phases
    assert Phase.explain not in phases
