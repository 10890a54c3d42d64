"""A fuzz run's time budget: ``--time-budget 45m`` parsed, split over the properties, and enforced.

Why: hypothesis has example budgets, not time budgets, and a nightly job must end on time with a
complete report. Each property gets a slice of what is left, in proportion to its estimated cost
(``profiles.COST`` times its example budget), so a property that ends early hands its time on and the
last ones are not starved. The collector checks the slice after every recorded state and raises
``BudgetSpent``: a ``KeyboardInterrupt``, the one exception hypothesis takes to mean "stop now" (it neither
treats it as a failure nor shrinks it, nor saves the cut example to its database, where a later run would
replay it as flaky); what was recorded (and every counterexample, already on disk) stays.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from properties import profiles
from validation.errors import InputError

# Kept back from the budget for the parent's work after the properties: merging, finding files, report.
REPORT_MARGIN_S = 5.0
# Time left below which no top-up round starts (``fuzz._top_up``): a round's start-up (workers, Paddle, the
# pinned examples) takes seconds, and a round cut at once would reach nothing.
MIN_TOP_UP_S = 15.0


class BudgetSpent(KeyboardInterrupt):
    """A property's time slice is over, or the run was asked to stop (raised by the collector, caught by the
    runner)."""


# Set in a worker when its parent, interrupted (Ctrl-C, SIGTERM), asks for what was found so far (SIGUSR1): the
# property running ends at its next state as if its slice were spent, and no further property starts.
_stop_asked = False


def ask_to_stop(signum: int | None = None, frame: object = None) -> None:
    """SIGUSR1's handler in a fuzz worker (``workers._serve``)."""
    global _stop_asked
    _stop_asked = True


def stop_asked() -> bool:
    return _stop_asked


def parse_duration(text: str) -> float:
    """``"90s"`` / ``"45m"`` / ``"1h"`` / ``"1h30m"`` / ``"120"`` (seconds) -> seconds; else an InputError."""
    spec = text.strip().lower()
    parts = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?", spec)
    if not spec or parts is None or not any(parts.groups()):
        raise InputError("time-budget", f"expected a duration like 90s, 45m, 1h or 1h30m, got {text!r}")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in parts.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise InputError("time-budget", f"must be more than 0 seconds, got {text!r}")
    return total


def slice_end(now: float, deadline: float, name: str, later: Sequence[str], profile: str) -> float:
    """When property ``name`` must stop: its cost's share of the time left, ``later`` still to run after it."""
    budgets = profiles.BUDGETS[profile]
    cost = {n: profiles.COST[n] * budgets[n] for n in (name, *later)}
    share = cost[name] / sum(cost.values())
    return now + max(0.0, deadline - now) * share
