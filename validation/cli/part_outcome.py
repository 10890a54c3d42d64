"""One part's outcome in the main job: its status, the headline a reviewer reads, and the lines under it."""

from __future__ import annotations

from dataclasses import dataclass, field

from validation.verdicts import PartStatus, Verdict


@dataclass
class Part:
    """One part's outcome: ``held``, ``FAILED`` or ``skipped`` (with its reason), and what a reviewer reads."""

    name: str
    status: PartStatus
    headline: str
    lines: list[str] = field(default_factory=list)
    seconds: float = 0.0
    # The known findings it met, one label each: "REGRESSION: stale padded slots, FINDINGS 1" (validation.known_findings).
    known: list[str] = field(default_factory=list)

    @classmethod
    def skipped(cls, name: str, reason: str) -> Part:
        return cls(name, PartStatus.SKIPPED, reason)

    def to_dict(self) -> dict[str, object]:
        return {"part": self.name, "status": self.status, "headline": self.headline, "lines": self.lines,
                "seconds": round(self.seconds, 1), "known": self.known}


def known_phrase(labels: list[str]) -> str:
    """``1 known REGRESSION: stale padded slots, FINDINGS 1``: distinct labels counted per verdict, so a reader
    of a summary alone sees what the gate let through and where it is written up."""
    by_verdict: dict[str, list[str]] = {str(v): [] for v in (Verdict.REGRESSION, Verdict.SHARED_BUG, Verdict.FIX)}
    for label in dict.fromkeys(labels):
        verdict, _, what = label.partition(": ")
        by_verdict.setdefault(verdict, []).append(what)
    return "; ".join(f"{len(whats)} known {verdict}: {'; '.join(whats)}" for verdict, whats in by_verdict.items() if whats)
