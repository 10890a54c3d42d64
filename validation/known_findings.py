"""Known findings: triaged, recorded, reported on every run, and not failing the gate.

A pre-merge gate that fails forever on one finding the team has already triaged stops being read.
Like an ``xfail`` with a reason, an entry in ``fixtures/known_findings.json`` names a verdict (or several,
``A|B``), a scenario prefix and the sides it applies to (``*``: any), with the source lines it rests on; matching findings are printed as known (with the
reason and the evidence file) instead of failing, and the properties keep searching for new ones.
``--no-known`` turns the list off.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import fixtures

KNOWN_FILE = fixtures.ROOT / "known_findings.json"


@dataclass(frozen=True)
class Known:
    verdict: str
    scenario_prefix: str
    baselines: tuple[str, ...]
    candidates: tuple[str, ...]
    reason: str
    evidence: str
    source: tuple[str, ...] = ()  # the FastDeploy lines it rests on (file@commit:line), or "inferred: ..."
    name: str = ""  # what a summary calls it, e.g. "stale padded slots"
    findings: str = ""  # where FINDINGS.md writes it up, e.g. "FINDINGS 1"

    def label(self, verdict: str) -> str:
        """``REGRESSION: stale padded slots, FINDINGS 1``: how a summary row and the verdict name it."""
        return f"{verdict}: {self.name or self.scenario_prefix.strip()}" + (f", {self.findings}" if self.findings else "")


@functools.cache
def entries(path: Path = KNOWN_FILE) -> tuple[Known, ...]:
    data = json.loads(path.read_text())
    return tuple(Known(e["verdict"], e["scenario_prefix"], tuple(e["baselines"]), tuple(e["candidates"]),
                       e["reason"], e["evidence"], tuple(e.get("source", ())), e.get("name", ""), e.get("findings", ""))
                 for e in data["known"])


def _names(name: str, listed: tuple[str, ...]) -> bool:
    return "*" in listed or name in listed


def match(baseline: str, candidate: str, verdict: str, scenario: str) -> Known | None:
    """The recorded entry this finding falls under, if any."""
    for entry in entries():
        if (verdict in entry.verdict.split("|") and scenario.startswith(entry.scenario_prefix)
                and _names(baseline, entry.baselines) and _names(candidate, entry.candidates)):
            return entry
    return None
