"""Saved counterexamples (``fixtures/regressions/*.json``): load them and replay them.

Why: every counterexample ever found stays in the suite. A file holds the state (and, for a
multi-step case, the earlier steps in ``history``), the two sides it was found with, and the verdict
set it produced; the replay must reproduce that set, or a later candidate must have fixed it.
"""

from __future__ import annotations

import fixtures
from dataclasses import dataclass
from pathlib import Path

from properties.checks import equivalence
from properties.config import PROPERTY_LAYERS, FuzzConfig
from properties.strategies import Case
from validation.compare import Report
from validation.limits import read_json

REGRESSIONS = fixtures.ROOT / "regressions"


@dataclass(frozen=True)
class Regression:
    name: str
    note: str
    case: Case
    config: FuzzConfig
    expected: frozenset[str]

    def replay(self, candidate: str | None = None) -> Report:
        """Triage the saved case again (optionally with another candidate) on fresh instances."""
        cfg = self.config if candidate is None else FuzzConfig(self.config.baseline, candidate,
                                                              backend=self.config.backend, layers=self.config.layers)
        return equivalence(self.case, cfg)


def load(path: Path) -> Regression:
    data = read_json(path, "case file")
    case = Case.from_dict(data["state"], history=data.get("history", ()))
    cfg = FuzzConfig(data["baseline"], data["candidate"], backend=data.get("backend", "paddle"),
                     layers=int(data.get("layers", PROPERTY_LAYERS)))
    return Regression(data["name"], data.get("note", ""), case, cfg, frozenset(data["expected"]["verdicts"]))


def all_regressions(directory: Path = REGRESSIONS) -> list[Regression]:
    return [load(p) for p in sorted(directory.glob("*.json"))]
