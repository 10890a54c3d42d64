"""The programmatic fuzz API: ``run_fuzz(baseline, candidate, ...) -> FuzzResult``.

Why an API under the CLI: the mutation-testing work calls it once per mutant and needs, per
property, whether and how fast the mutant was caught, plus the minimal counterexample; the
``dsa-validate fuzz`` command is a thin printer over the same result.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import multiprocessing
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import reporting
from hypothesis.reporting import with_reporter

from properties import profiles
from properties.case_reducer import reduce_failure
from properties.collector import Collector, Group, PropertyStats
from properties.config import DEFAULT_OUT, PROPERTY_LAYERS, FuzzConfig
from properties.strategies import DEFAULT_BLOCK_SIZES, SWEEP_BLOCK_SIZES
from properties.suite import build_property
from properties.workers import SharesInterrupted, run_shares
from properties.time_budget import MIN_TOP_UP_S, REPORT_MARGIN_S, BudgetSpent, slice_end, stop_asked
from validation.compare import REGRESSION
from validation.verdicts import Verdict
from validation.errors import InputError
from validation.options import PAD_CONTRACTS
from validation.impls.paddle_runtime import available as paddle_available, paddle
from validation.seam import names as registry_names, observe
from validation.state import BatchState

Progress = Callable[[str], None]


@dataclass
class FuzzResult:
    """Everything a fuzz run found: per-property stats, finding groups, scenarios, exit code."""

    config: FuzzConfig
    profile: str
    properties: dict[str, PropertyStats]
    groups: list[Group]
    reached: dict[str, int]
    missing: list[str] = field(default_factory=list)
    seconds: float = 0.0
    reached_by_size: dict[int, dict[str, int]] = field(default_factory=dict)
    time_budget: float | None = None
    top_ups: list[dict[str, Any]] = field(default_factory=list)  # rounds run on a time budget's unused time
    interrupted: str | None = None  # "SIGINT" or "SIGTERM" when the run was stopped: a partial report
    unfinished: list[str] = field(default_factory=list)  # properties an interruption cut off

    @property
    def examples(self) -> int:
        return sum(p.examples for p in self.properties.values())

    @property
    def failed(self) -> list[str]:
        return [name for name, p in self.properties.items() if p.failed]

    @property
    def verdicts(self) -> set[str]:
        return {g.verdict for g in self.groups}

    @property
    def exit_code(self) -> int:
        """1 on a REGRESSION (with strict: any finding), a failed property, or a required scenario
        never generated; 0 otherwise. An interrupted run exits as the shell reports its signal: 130 or 143."""
        if self.interrupted:
            return 128 + int(getattr(signal, self.interrupted))
        unknown = [g for g in self.groups if g.known is None]
        if self.failed or self.missing or any(g.verdict == REGRESSION for g in unknown):
            return 1
        return 1 if self.config.strict and unknown else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline": self.config.baseline, "candidate": self.config.candidate, "profile": self.profile,
            "block_sizes": list(self.config.block_sizes), "backend": self.config.backend,
            "layers": self.config.layers, "strict": self.config.strict, "exit_code": self.exit_code,
            "examples": self.examples, "seconds": round(self.seconds, 3), "missing_scenarios": self.missing,
            "reached": self.reached, "time_budget": self.time_budget, "top_up_rounds": self.top_ups,
            "interrupted": self.interrupted, "unfinished_properties": self.unfinished,
            "reached_by_block_size": {str(bs): tags for bs, tags in self.reached_by_size.items()},
            "properties": {name: {
                "examples": p.examples, "seconds": round(p.seconds, 3), "failed": p.failed,
                "examples_by_block_size": {str(bs): n for bs, n in sorted(p.by_block_size.items())},
                "cut_short_by_time_budget": p.cut_short and not p.interrupted,
                "cut_short_by_interruption": p.interrupted,
                "examples_to_failure": p.examples_to_failure, "seconds_to_failure": p.seconds_to_failure,
                "counterexample": p.counterexample, "path": None if p.path is None else str(p.path),
                "error": p.error,
            } for name, p in self.properties.items()},
            "findings": [{
                "verdict": g.verdict, "scenario": g.scenario, "count": g.count, "consumers": dict(g.consumers),
                "known": g.known,
                "properties": sorted(g.properties), "path": None if g.path is None else str(g.path),
                "state": None if g.case is None else g.case.state.to_dict(),
            } for g in self.groups],
        }


class FuzzInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM ended a run with worker processes: ``result`` is the partial report (what each property
    found until then, every finding). A ``KeyboardInterrupt``, so a caller that only wants whole runs stops."""

    def __init__(self, result: FuzzResult) -> None:
        super().__init__(result.interrupted)
        self.result = result
        self.signal_name = result.interrupted


def run_fuzz(baseline: str = "legacy", candidate: str = "single_step", *, profile: str = "ci",
             block_sizes: Sequence[int] | None = None, sweep: bool = False, backend: str = "paddle",
             layers: int = PROPERTY_LAYERS, strict: bool = False, properties: Sequence[str] | None = None,
             stop_at_first_failure: bool = False, progress: Progress | None = None,
             max_examples: int | None = None, seed: int | None = None,
             out_dir: Path | str = DEFAULT_OUT, jobs: int | None = None, use_known: bool = True,
             pad_contract: str = PAD_CONTRACTS[0], pre_serving: bool = False,
             time_budget: float | None = None, fill_budget: bool = False, in_process: bool = False) -> FuzzResult:
    """Run the properties (default: all five, the state machine included) and collect every finding.

    ``candidate``/``baseline`` are seam specs (registry name, ``module:NAME``, ``path.py:NAME``).
    ``sweep`` draws block sizes from the sweep list (1 ... 256); ``block_sizes`` fixes them.
    ``max_examples`` overrides the profile's budget for every property; ``seed`` fixes the seed.
    ``use_known=False`` fails on findings recorded in ``fixtures/known_findings.json`` too.
    ``pad_contract`` is what a padded row's slot must be; ``pre_serving`` lets the state machine start
    before the server's start-up (on zero-filled buffers, a state no served step sees).
    ``jobs`` worker processes share the properties (default: one per CPU); even one is a process of its own, so
    a crash in the code under test (a segfaulting kernel) fails the property it hit instead of ending the caller.
    ``in_process`` runs them in this process instead (mutation testing: numpy mutants, a worker's start-up
    would be most of the time to a kill).
    ``time_budget`` (seconds) ends the run on time: each property stops when its share of the time left is
    spent, and the report says which properties were cut short. ``fill_budget`` keeps fuzzing until it is
    spent: once no required scenario is missing, rounds of every selected property at every block size, each
    with a new seed.
    """
    selected = tuple(properties or profiles.PROPERTIES)
    for name in selected:
        if name not in profiles.PROPERTIES:
            raise InputError("properties", f"unknown property {name!r} (choose from: {', '.join(profiles.PROPERTIES)})")
    if layers < 1:
        raise InputError("layers", f"must be >= 1, got {layers}")
    sizes = SWEEP_BLOCK_SIZES if sweep else tuple(block_sizes or DEFAULT_BLOCK_SIZES)
    if fill_budget and time_budget is None:
        raise InputError("fill-budget", "needs a time budget to fill (--time-budget DURATION)")
    if pad_contract not in PAD_CONTRACTS:
        raise InputError("pad-contract", f"unknown contract {pad_contract!r} (choose from: {', '.join(PAD_CONTRACTS)})")
    config = FuzzConfig(baseline, candidate, sizes, backend, layers, strict, Path(out_dir), use_known, pad_contract,
                        pre_serving)
    config.baseline_impl, config.candidate_impl  # resolve both now: a bad spec is an InputError, not a finding
    started = time.perf_counter()
    options = {"profile": profile, "max_examples": max_examples, "seed": seed}
    deadline = None if time_budget is None else started + max(time_budget - REPORT_MARGIN_S, 0.5 * time_budget)
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(selected)))
    trimmed = max_examples is not None or set(selected) != set(profiles.PROPERTIES)
    top_ups: list[dict[str, Any]] = []
    try:
        collector = _run_round(config, selected, options, jobs, stop_at_first_failure, progress, deadline,
                               in_process)
        if deadline is not None and (fill_budget or not trimmed) and not (stop_at_first_failure and any(
                s.failed for s in collector.stats.values())):  # a trimmed run is not held to coverage: no gap rounds
            top_ups = _top_up(collector, config, selected, options, jobs, progress, deadline,
                              chase_gaps=not trimmed, fill=fill_budget, in_process=in_process)
    except SharesInterrupted as stop:
        # No finding file is rewritten: each was written when found, and a worker cut off may hold a smaller one.
        part = stop.collector
        raise FuzzInterrupted(FuzzResult(
            config, profile, {name: part.stats[name] for name in selected if name in part.stats},
            sorted(part.groups.values(), key=_group_order), dict(sorted(part.reached.items())), [],
            time.perf_counter() - started, _by_size(part), time_budget, top_ups, stop.signal_name,
            stop.unfinished)) from None
    collector.stats = {name: collector.stats[name] for name in selected if name in collector.stats}
    collector.write_findings()
    missing = [] if trimmed else _missing(collector, profile, sizes)  # a trimmed run is not held to coverage
    return FuzzResult(config, profile, collector.stats, sorted(collector.groups.values(), key=_group_order),
                      dict(sorted(collector.reached.items())), missing, time.perf_counter() - started,
                      _by_size(collector), time_budget, top_ups)


def _by_size(collector: Collector) -> dict[int, dict[str, int]]:
    """Scenarios reached per block size, both sorted, as the report prints them."""
    return {bs: dict(sorted(tags.items())) for bs, tags in sorted(collector.reached_by_size.items())}


def _run_round(config: FuzzConfig, names: Sequence[str], options: dict[str, Any], jobs: int,
               stop_at_first_failure: bool, progress: Progress | None, deadline: float | None,
               in_process: bool = False) -> Collector:
    """Run the properties once, shared among ``jobs`` worker processes, or in this process when asked."""
    forked = _can_run_before_fork(config)
    if not in_process and not forked and not _main_can_be_reimported():
        if progress:
            progress("workers cannot start from a __main__ read from stdin: the properties run in this process")
        in_process = True
    if in_process:
        _require_a_working_baseline(_baseline_failure(config))
        return _run_properties(config, names, options, stop_at_first_failure, progress, deadline)
    if forked:
        _require_a_working_baseline(_baseline_failure(config))
    shares = _balance(names, jobs, options["profile"])
    # Anything that may touch CUDA starts its workers from a fresh fork server: a CUDA context this process
    # already holds (a GPU test, the main job's states part) is unusable in a forked child.
    context = multiprocessing.get_context("fork" if forked else "forkserver")
    target = functools.partial(_run_worker, options=options, stop_at_first_failure=stop_at_first_failure,
                               deadline=deadline)
    outcome = run_shares(context, config, shares, target,
                         on_property=(lambda stats: progress(_progress_line(stats))) if progress else None)
    _require_a_working_baseline(outcome.baseline_failure)
    return outcome.collector


def _top_up(collector: Collector, config: FuzzConfig, selected: Sequence[str], options: dict[str, Any], jobs: int,
            progress: Progress | None, deadline: float, *, chase_gaps: bool, fill: bool,
            in_process: bool) -> list[dict[str, Any]]:
    """Spend a time budget's unused minutes on the required scenarios still missing (and, with ``fill``, then on
    more of everything); the rounds run.

    Why: the profile's example budgets can end long before the budget (the nightly's in about 2 of its 60
    minutes on 2 cores), and which rare scenario (a batch over 1,024 requests, an int32 overflow) one block
    size misses is chance. Each round draws only at the block sizes still missing something, with a new seed,
    and runs only the properties that can reach it: ``equivalence`` and ``truth`` for a single-step scenario,
    the state machine for ``multi_step``; a property that failed is not run again. With nothing missing, a
    ``fill`` round runs every selected property that has not failed at every block size, with a new seed: a
    nightly that wants its whole hour searched gets it, and still ends on time (each round's properties share
    what is left, as the first round's did)."""
    profile = options["profile"]
    derandomized = bool(profiles.for_property(profile, "equivalence").derandomize)
    first_seed = options["seed"] if options["seed"] is not None else (0 if derandomized else
                                                                       secrets.randbelow(2**31))
    rounds: list[dict[str, Any]] = []
    while deadline - time.perf_counter() > MIN_TOP_UP_S:
        gaps = {bs: gap for bs in config.block_sizes
                if (gap := profiles.required_at(profile, bs) - _reached_at(collector, bs))} if chase_gaps else {}
        wanted = set().union(*gaps.values())
        failed = {name for name, stats in collector.stats.items() if stats.failed}
        names = [n for n in (("equivalence", "truth") if wanted - {profiles.MACHINE} else ())
                 + ((profiles.MACHINE,) if profiles.MACHINE in wanted else ()) if n not in failed]
        sizes = tuple(sorted(gaps))
        filling = fill and not names
        if filling:
            names, sizes = [n for n in selected if n not in failed], tuple(config.block_sizes)
        if not names:
            break
        seed = first_seed + len(rounds) + 1
        if progress:
            purpose = "to fill the time budget" if filling else f"for {', '.join(sorted(wanted))}"
            progress(f"top-up round {len(rounds) + 1} (seed {seed}): {', '.join(names)} at block sizes "
                     f"{','.join(map(str, sizes))} {purpose}")
        try:
            part = _run_round(dataclasses.replace(config, block_sizes=sizes), names, {**options, "seed": seed},
                              min(jobs, len(names)), False, progress, deadline, in_process)
        except SharesInterrupted as stop:  # what the rounds before this one found is reported too
            collector.merge(stop.collector)
            stop.collector = collector
            raise
        collector.merge(part)
        rounds.append({"seed": seed, "block_sizes": list(sizes), "properties": names, "fill": filling,
                       "states": sum(s.examples for s in part.stats.values()),
                       "missing_before": [] if filling else
                       sorted(f"{t} at block size {bs}" for bs, g in gaps.items() for t in g)})
    return rounds


def _reached_at(collector: Collector, block_size: int) -> set[str]:
    return {tag for tag, n in collector.reached_by_size.get(block_size, {}).items() if n}


def _missing(collector: Collector, profile: str, sizes: Sequence[int]) -> list[str]:
    """Required scenarios never generated: by name for one block size, ``name at block size N`` for several."""
    missing = []
    for block_size in sizes:
        reached = collector.reached_by_size.get(block_size, {})
        for tag in sorted(profiles.required_at(profile, block_size)):
            if not reached.get(tag):
                missing.append(tag if len(sizes) == 1 else f"{tag} at block size {block_size}")
    return missing


def _run_properties(config: FuzzConfig, names: Sequence[str], options: dict[str, Any], stop_at_first_failure: bool,
                    progress: Progress | None, deadline: float | None = None,
                    send: Callable[[tuple[str, Any]], None] | None = None) -> Collector:
    """Run some properties in this process, one collector for all of them (each in its time slice), collecting
    young garbage less often meanwhile. ``send`` (a worker's pipe) gets ``("start", name)`` before each property
    and the whole collector after it."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    collector = Collector(config)
    with _young_collections_every(GC_YOUNG_THRESHOLD):
        _run_each(config, names, options, stop_at_first_failure, progress, deadline, send, collector)
    return collector


# Allocations between two young-generation collections while the properties run (CPython's default: 700).
# Why: a state allocates thousands of short-lived objects (numpy scalars, dicts of knobs, Paddle handles) that
# die young anyway, and at the default every few states paid a collection: 5% of the ``ci`` run's CPU
# (``benchmarks/bench_gc_threshold.py``; BENCHMARKS, "Fewer garbage collections"). Nothing the properties
# compute depends on when garbage is freed.
GC_YOUNG_THRESHOLD = 50_000


@contextlib.contextmanager
def _young_collections_every(allocations: int) -> Iterator[None]:
    """Collect the young generation every ``allocations`` allocations, then restore the caller's thresholds."""
    before = gc.get_threshold()
    gc.set_threshold(allocations, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


def _run_each(config: FuzzConfig, names: Sequence[str], options: dict[str, Any], stop_at_first_failure: bool,
              progress: Progress | None, deadline: float | None, send: Callable[[tuple[str, Any]], None] | None,
              collector: Collector) -> None:
    """The properties one after another into ``collector``, each in its time slice."""
    for i, name in enumerate(names):
        if stop_asked():  # the parent was interrupted: what ended is sent, nothing new starts
            break
        test = build_property(name, config, collector, **options)
        stats = collector.start(name)
        if deadline is not None:
            collector.deadline = slice_end(time.perf_counter(), deadline, name, names[i + 1:], options["profile"])
        held: list[object] = []
        if send:
            send(("start", name))
        try:
            with with_reporter(held.append):
                test()
        except BudgetSpent:
            stats.cut_short = True
            stats.interrupted = stop_asked()
            held.clear()  # hypothesis' "reproduce this failure" note is about the budget, not a failure
        except AssertionError:
            stats.failed = True
        except Exception as exc:  # noqa: BLE001 - hypothesis' own errors (flaky, health) end this property
            stats.failed = True
            stats.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        for message in held:
            reporting.default(message)
        collector.stop(name)
        if send:
            send(("done", collector))
        # hypothesis shrank the knobs; this shrinks the state. The parent already holds the unreduced failure, so a
        # candidate that crashes the worker on a smaller state loses nothing; the reduced one is sent again.
        if stats.failed and not stop_asked() and reduce_failure(name, config, collector) and send:
            send(("done", collector))
        if progress:
            progress(_progress_line(stats))
        if stats.failed and stop_at_first_failure:
            break


def _run_worker(config: FuzzConfig, names: Sequence[str], send: Callable[[tuple[str, Any]], None], *,
                options: dict[str, Any], stop_at_first_failure: bool, deadline: float | None) -> str | None:
    """One worker's share of the properties, reported through ``send`` as it goes (``workers.run_shares``); when
    its baseline cannot run in it, why (a string: an ``InputError`` does not survive the trip through pickle)."""
    failure = _baseline_failure(config, " in a worker process")
    if failure is None:
        _run_properties(config, names, options, stop_at_first_failure, None, deadline, send)
    return failure


def _baseline_failure(config: FuzzConfig, where: str = "") -> str | None:
    """Run both sides once on a one-token state; why the baseline cannot run, when it cannot.

    Why: a baseline that fails on every state (a CUDA context made before the fork, unusable in the forked
    workers; a broken plug-in) makes every state a crash of both sides: SHARED-BUGs, exit 0, nothing judged.
    The candidate's failures stay findings. Run in the parent before forking, it also makes Paddle's import and
    indexing probe happen once, shared by the workers."""
    inputs = BatchState.from_dict({"block_size": 1, "seq_lens_encoder": [1], "seq_lens_decoder": [0],
                                   "seq_lens_this_time": [1], "block_tables": [[0]]}).step_inputs()
    baseline = observe(config.baseline_impl.new(), inputs, config.layers)
    if baseline.error is not None:
        return (f"{config.baseline} fails on a one-token state{where} ({baseline.error}): nothing can be judged "
                "against it")
    observe(config.candidate_impl.new(), inputs, config.layers)
    return None


def _require_a_working_baseline(failure: str | None) -> None:
    if failure is not None:
        raise InputError("baseline", failure)


def _main_can_be_reimported() -> bool:
    """Whether fork-server workers can start: each re-imports the parent's ``__main__`` from its name or its file
    (``multiprocessing.spawn.get_preparation_data``). A script read from stdin (``python - <<EOF``, seen on the
    H100) has ``__file__ == "<stdin>"``, which names no file, and every worker died before it ran a property."""
    main = sys.modules.get("__main__")
    if getattr(main, "__spec__", None) is not None:
        return True
    path = getattr(main, "__file__", None)
    if path is None:
        return True
    return os.path.isfile(os.path.join(multiprocessing.process.ORIGINAL_DIR or os.getcwd(), path))


def _can_run_before_fork(config: FuzzConfig) -> bool:
    """Whether both sides may run in the parent and its workers be forked from it: only the built-in Paddle models
    (and the oracle) on a Paddle built without CUDA. The cuda backend, a CUDA Paddle, a checkout's compiled
    kernels or a plug-in may make a CUDA context, and one made before ``fork`` fails every call in the children
    (measured on an H100: every state of ``fuzz --backend cuda`` became a crash of both sides); their workers
    come from a fork server instead."""
    builtins = registry_names("paddle")
    if config.backend != "paddle" or config.baseline not in builtins or config.candidate not in builtins:
        return False
    return paddle_available() and not paddle().is_compiled_with_cuda()  # no Paddle: the oracle alone, fork-safe too


def _balance(names: Sequence[str], jobs: int, profile: str) -> list[list[str]]:
    """Longest-first greedy split of the properties over ``jobs`` processes by estimated cost."""
    shares: list[list[str]] = [[] for _ in range(jobs)]
    load = [0.0] * jobs
    budgets = profiles.BUDGETS[profile]
    for name in sorted(names, key=lambda n: -profiles.COST[n] * budgets[n]):
        i = load.index(min(load))
        shares[i].append(name)
        load[i] += profiles.COST[name] * budgets[name]
    return [s for s in shares if s]


def _progress_line(stats: PropertyStats) -> str:
    sizes = ", ".join(f"{bs}: {n}" for bs, n in sorted(stats.by_block_size.items()))
    cut = ", cut short by the interruption" if stats.interrupted else \
        ", cut short by the time budget" if stats.cut_short else ""
    by_size = f" (by block size {sizes})" if sizes else ""
    return (f"{stats.name}: {stats.examples} examples in {stats.seconds:.1f}s{by_size}, "
            f"{'FAILED' if stats.failed else 'ok'}{cut}")


def _group_order(group: Group) -> tuple[int, str]:
    order = {v: i for i, v in enumerate(Verdict.worst_first()[:3])}
    return order.get(group.verdict, 3), group.scenario
