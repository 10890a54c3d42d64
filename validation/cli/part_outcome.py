"""One part's outcome in the main job: its status, the headline a reviewer reads, and the lines under it."""

from __future__ import annotations

from dataclasses import dataclass, field

from validation.verdicts import PartStatus


@dataclass
class Part:
    """One part's outcome: ``held``, ``FAILED`` or ``skipped`` (with its reason), and what a reviewer reads."""

    name: str
    status: PartStatus
    headline: str
    lines: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @classmethod
    def skipped(cls, name: str, reason: str) -> Part:
        return cls(name, PartStatus.SKIPPED, reason)

    def to_dict(self) -> dict[str, object]:
        return {"part": self.name, "status": self.status, "headline": self.headline, "lines": self.lines,
                "seconds": round(self.seconds, 1)}
