"""Findings of every class, kept while hypothesis runs, and counterexamples written as they appear.

Why: hypothesis stops at the first failure, but a fuzz run must report SHARED-BUG and FIX findings
as well as REGRESSIONs. Each property hands every report to ``Collector.record``; that keeps the
smallest example per (verdict, scenario), and returns whether the report holds a failing verdict,
so the property raises only for those and hypothesis shrinks exactly them. The failing case is
written to disk at once (temp file + ``os.replace``), so a killed run still leaves it behind. Under a
time budget the collector ends the property once its slice is spent (``BudgetSpent``), after recording.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from properties.config import FuzzConfig
from properties.strategies import Case
from properties.time_budget import BudgetSpent, stop_asked
from validation import atomic_file
from validation.compare import Finding, Report
from validation.state import MAX_NUM_SEQS


@dataclass
class Group:
    """All findings of one verdict in one scenario, with the smallest case that showed them."""

    verdict: str
    scenario: str
    count: int = 0
    consumers: Counter = field(default_factory=Counter)
    properties: set[str] = field(default_factory=set)
    case: Case | None = None
    verdicts: tuple[str, ...] = ()
    path: Path | None = None
    known: str | None = None  # the recorded reason, when this group is a known finding


@dataclass
class PropertyStats:
    """One property's run: how much it ran, and its minimal counterexample when it failed."""

    name: str
    examples: int = 0
    seconds: float = 0.0
    failed: bool = False
    examples_to_failure: int | None = None
    seconds_to_failure: float | None = None
    counterexample: dict[str, Any] | None = None
    report: dict[str, Any] | None = None
    path: Path | None = None
    error: str | None = None
    by_block_size: Counter = field(default_factory=Counter)
    cut_short: bool = False  # ended by the time budget (or an interruption) before its example budget
    interrupted: bool = False  # cut short because the run was interrupted, not by the time budget
    started: float = field(default_factory=time.perf_counter, repr=False)

    def absorb(self, later: PropertyStats) -> None:
        """Add a later round of the same property (a time budget's top-up round) to this one."""
        if not self.failed and later.failed:
            for name in ("examples_to_failure", "counterexample", "report", "path", "error"):
                setattr(self, name, getattr(later, name))
            if later.examples_to_failure is not None:
                self.examples_to_failure = self.examples + later.examples_to_failure
            self.seconds_to_failure = None if later.seconds_to_failure is None else \
                self.seconds + later.seconds_to_failure
        self.failed |= later.failed
        self.cut_short |= later.cut_short
        self.interrupted |= later.interrupted
        self.examples += later.examples
        self.seconds += later.seconds
        self.by_block_size.update(later.by_block_size)


def size(case: Case) -> tuple[int, int]:
    """How big a case is to a reader: tokens, requests and table cells of every step, then steps."""
    steps = (case.state, *case.history)
    return sum(s.num_tokens + s.bsz + s.block_tables.size for s in steps), len(steps)


def scenario_of(finding: Finding, case: Case) -> str:
    """The scenario a finding belongs to: its request's phase, the padding kind, or the state-wide cause."""
    prefix = "multi_step " if case.history else ""
    tags = case.tags
    if case.state.bsz > MAX_NUM_SEQS:
        # FDConfig.check() asserts max_num_seqs <= 512: such a batch reaches the op only when called directly.
        prefix = "op-level " + prefix
    if finding.consumer == "launch" and "batch:over_launch_limit" in tags:
        return prefix + "batch:over_launch_limit"
    if "int32 overflow" in finding.note:
        return prefix + "block_id:int32_overflow"
    if finding.token is not None and finding.request is None and finding.consumer in ("indexer", "attention"):
        return prefix + ("padding:capture" if "padding:capture" in tags else "padding:overlap")
    if finding.request is not None and finding.request < len(case.phases):
        return prefix + f"phase:{case.phases[finding.request]}"
    if finding.consumer == "memory":
        return prefix + "memory:buffer_overrun"
    return prefix + finding.consumer


class Collector:
    """Everything one run saw: examples per property, scenarios reached, findings, counterexamples."""

    def __init__(self, config: FuzzConfig) -> None:
        self.config = config
        self.stats: dict[str, PropertyStats] = {}
        self.reached: Counter = Counter()
        self.reached_by_size: dict[int, Counter] = {}
        self.deadline: float | None = None  # perf_counter() time at which the current property must end
        self.groups: dict[tuple[str, str], Group] = {}
        self._smallest_failure: dict[str, tuple[int, int]] = {}
        # Each failed property's smallest failing case and its report, for the reducer (``case_reducer``).
        self.failures: dict[str, tuple[Case, Report]] = {}

    def start(self, name: str) -> PropertyStats:
        self.stats[name] = PropertyStats(name)
        return self.stats[name]

    def stop(self, name: str) -> None:
        stats = self.stats[name]
        stats.seconds = time.perf_counter() - stats.started

    def record(self, name: str, case: Case, report: Report) -> bool:
        """Count the example, keep its findings; True when it holds a verdict that fails the property."""
        stats = self.stats.get(name) or self.start(name)
        stats.examples += 1
        block_size = case.state.block_size
        stats.by_block_size[block_size] += 1
        self.reached.update(case.tags)
        self.reached_by_size.setdefault(block_size, Counter()).update(case.tags)
        this_size = size(case)
        touched: set[tuple[str, str]] = set()
        last_scenario: dict[tuple[str, str], str] = {}
        for finding in report.findings:
            key = (finding.verdict, scenario_of(finding, case))
            group = self.groups.get(key)
            if group is None:
                group = self.groups.setdefault(key, Group(*key, known=self.config.known(*key)))
            group.count += 1
            group.consumers[finding.consumer] += 1
            touched.add(key)
            last_scenario[(finding.verdict, finding.consumer)] = key[1]
        for (verdict, consumer), more in report.elided.items():
            # Elided findings are counted with the scenario of the last built one of their kind; a kind whose
            # built findings the triage dropped (FIXes behind a baseline that faulted) is dropped with them.
            if (verdict, consumer) not in last_scenario:
                continue
            group = self.groups[(verdict, last_scenario[(verdict, consumer)])]
            group.count += more
            group.consumers[consumer] += more
        for key in touched:
            group = self.groups[key]
            group.properties.add(name)
            if group.case is None or this_size < size(group.case):
                group.case, group.verdicts = case, tuple(sorted(report.verdicts))
                self._write_group(group)  # on disk as found: a run killed later keeps it
        failing = bool(self.failing_kinds(case, report))
        if failing:
            self._fail(stats, case, report)
        if (self.deadline is not None and time.perf_counter() >= self.deadline) or stop_asked():
            raise BudgetSpent(name)
        return failing

    def failing_kinds(self, case: Case, report: Report) -> frozenset[tuple[str, str]]:
        """The (verdict, consumer) of every finding that fails the property: a failing verdict, not a known one."""
        return frozenset((f.verdict, f.consumer) for f in report.findings if f.verdict in self.config.failing_verdicts
                         and self._known(f.verdict, scenario_of(f, case)) is None)

    def _known(self, verdict: str, scenario: str) -> str | None:
        group = self.groups.get((verdict, scenario))  # its group holds the answer once the finding was recorded
        return self.config.known(verdict, scenario) if group is None else group.known

    def adopt(self, name: str, case: Case, report: Report, reduced_from: Case) -> None:
        """Keep a reduced failing case (``case_reducer``) as the property's counterexample and as the smallest case
        of each finding group it shows, written at once. Nothing is counted: it is not a generated state."""
        for finding in report.findings:
            group = self.groups.get((finding.verdict, scenario_of(finding, case)))
            if group is not None and (group.case is None or size(case) < size(group.case)):
                group.case, group.verdicts = case, tuple(sorted(report.verdicts))
                self._write_group(group)
        self._fail(self.stats[name], case, report, reduced_from)

    def _fail(self, stats: PropertyStats, case: Case, report: Report, reduced_from: Case | None = None) -> None:
        if not stats.failed:
            stats.failed = True
            stats.examples_to_failure = stats.examples
            stats.seconds_to_failure = time.perf_counter() - stats.started
        # Shrinking replays smaller and smaller cases; the last one written is the minimal one.
        if stats.name in self._smallest_failure and size(case) > self._smallest_failure[stats.name]:
            return
        self._smallest_failure[stats.name] = size(case)
        self.failures[stats.name] = (case, report)
        stats.counterexample = case_file(case, sorted(report.verdicts), self.config, name=stats.name,
                                         reduced_from=reduced_from)
        stats.report = report.to_dict(max_findings=50)
        stats.path = write_json(self.config.out_dir / f"{stats.name}.json", stats.counterexample)

    def merge(self, other: Collector) -> None:
        """Fold in what a worker process or a later round collected (its properties, scenarios and groups)."""
        for name, theirs in other.stats.items():
            if name in self.stats:
                self.stats[name].absorb(theirs)
            else:
                self.stats[name] = theirs
        self.reached.update(other.reached)
        for block_size, tags in other.reached_by_size.items():
            self.reached_by_size.setdefault(block_size, Counter()).update(tags)
        for key, theirs in other.groups.items():
            mine = self.groups.get(key)
            if mine is None:
                self.groups[key] = theirs
                continue
            mine.count += theirs.count
            mine.consumers.update(theirs.consumers)
            mine.properties |= theirs.properties
            if theirs.case is not None and (mine.case is None or size(theirs.case) < size(mine.case)):
                mine.case, mine.verdicts = theirs.case, theirs.verdicts

    def write_findings(self) -> None:
        """Write the smallest case of every finding group (for its one-line reproduction)."""
        for group in self.groups.values():
            if group.case is not None:
                self._write_group(group)

    def _write_group(self, group: Group) -> None:
        slug = f"{group.verdict}_{group.scenario}".replace(":", "-").replace(" ", "_").lower()
        group.path = write_json(self.config.out_dir / "findings" / f"{slug}.json",
                                case_file(group.case, group.verdicts, self.config, name=slug))


def case_file(case: Case, verdicts: Sequence[str], config: FuzzConfig, *, name: str,
              reduced_from: Case | None = None) -> dict[str, Any]:
    """A case in the regression-file form (``BatchState.from_json`` reads its ``state``); a reduced one says what
    it was reduced from."""
    note = f"found by the property suite; scenarios: {', '.join(sorted(case.tags))}"
    if reduced_from is not None:
        old = reduced_from.state
        note += f"; reduced from {old.bsz} requests, {old.num_tokens} tokens, {old.max_blocks} table columns"
        if len(reduced_from.history) != len(case.history):
            note += f", after {len(reduced_from.history)} earlier steps"
    data: dict[str, Any] = {
        "name": name,
        "note": note,
        "state": case.state.to_dict(),
        "baseline": config.baseline,
        "candidate": config.candidate,
        "backend": config.backend,
        "layers": config.layers,
        "expected": {"verdicts": sorted(verdicts)},
    }
    if case.history:
        data["history"] = [h.to_dict() for h in case.history]
    return data


def write_json(path: Path, data: dict[str, Any]) -> Path:
    """Write atomically: a kill mid-write never leaves half a counterexample."""
    return atomic_file.write_text(path, json.dumps(data, separators=(",", ":")) + "\n", durable=False)
