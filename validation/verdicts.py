"""Every verdict word the suite prints, defined once.

``Verdict`` is the triage of one element (or one finding, one request, one run of e2e) baseline -> candidate,
worst first. ``PartStatus`` is one part of the main job, and ``JobVerdict`` the main job's last line. They are
``StrEnum`` so that they print, compare and serialise as the words users grep for.
"""

from __future__ import annotations

from enum import StrEnum


class Verdict(StrEnum):
    """Triage of a difference, worst first (the order ``worst`` and the summaries rely on)."""

    REGRESSION = "REGRESSION"  # the candidate is wrong where the baseline was right
    SHARED_BUG = "SHARED-BUG"  # both are wrong
    FIX = "FIX"  # the candidate is right where the baseline was wrong
    OK = "OK"  # both are right

    @classmethod
    def worst_first(cls) -> tuple[Verdict, ...]:
        return tuple(cls)


class PartStatus(StrEnum):
    """What became of one part of the main job."""

    HELD = "held"
    FAILED = "FAILED"
    SKIPPED = "skipped"


class JobVerdict(StrEnum):
    """The main job's verdict line; a skipped part is never a pass."""

    PASSED = "PASSED"
    FAILED = "FAILED"
    PASSED_WITH_SKIPS = "PASSED with parts skipped"
    INCOMPLETE = "INCOMPLETE (a part was skipped)"
