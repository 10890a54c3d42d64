"""The fuzzer's worker processes: sides that cannot survive a fork get fresh workers, and a baseline that cannot
run in its workers ends the run with exit 2, never a pass.

Why: the parent ran both sides once before it forked its workers (Paddle's import and probe, shared). On a GPU
that made a CUDA context the forked workers could not use: every call there failed, both sides "crashed" on
every state, and ``fuzz --backend cuda`` reported SHARED-BUGs and exit 0 having judged nothing. A plug-in that
fails after a fork stands in for that here, on any machine.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from properties.collector import Collector
from properties.config import FuzzConfig
from properties.fuzz import GC_YOUNG_THRESHOLD, _can_run_before_fork, run_fuzz
from properties.workers import run_shares
from tests.support import ROOT, requires_paddle
from validation.errors import InputError

PLUGIN = '''
import multiprocessing
import os
from validation.oracle import Oracle

PARENT = os.getpid()


class FailsAfterFork(Oracle):
    """The truth in the process that loaded it; in a forked child, what a pre-fork CUDA context gives."""

    def __call__(self, inputs):
        if os.getpid() != PARENT:
            raise RuntimeError("cudaErrorInitializationError: initialization error")
        return super().__call__(inputs)


class FailsInWorkers(Oracle):
    """The truth in the main process, a failure in any worker (however it was started)."""

    def __call__(self, inputs):
        if multiprocessing.parent_process() is not None:
            raise RuntimeError("no device in a worker")
        return super().__call__(inputs)


class AlwaysFails:
    def __call__(self, inputs):
        raise RuntimeError("no device")
'''


@pytest.fixture
def plugin(tmp_path: Path) -> Path:
    path = tmp_path / "fork_plugin.py"
    path.write_text(PLUGIN)
    return path


def test_a_plug_in_that_cannot_survive_a_fork_is_judged_in_fresh_workers(plugin: Path, tmp_path: Path) -> None:
    result = run_fuzz(f"{plugin}:FailsAfterFork", "oracle", profile="dev", properties=["equivalence", "truth"],
                      max_examples=4, out_dir=tmp_path / "out", jobs=2)
    assert result.exit_code == 0 and not result.groups  # the truth against the truth: nothing to report
    assert all(stats.examples > 0 for stats in result.properties.values())


def test_a_baseline_that_cannot_run_in_the_workers_ends_the_run(plugin: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"^baseline: .*FailsInWorkers fails on a one-token state in a worker "
                                         r"process \(RuntimeError: no device in a worker\)"):
        run_fuzz(f"{plugin}:FailsInWorkers", "oracle", profile="dev", properties=["equivalence", "truth"],
                 max_examples=2, out_dir=tmp_path / "out", jobs=2)


def test_a_baseline_that_never_runs_ends_an_in_process_run_too(plugin: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"AlwaysFails fails on a one-token state \(RuntimeError: no device\)"):
        run_fuzz(f"{plugin}:AlwaysFails", "oracle", profile="dev", properties=["equivalence"], max_examples=2,
                 out_dir=tmp_path / "out", in_process=True)


def test_a_baseline_that_never_runs_ends_a_one_worker_run(plugin: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"AlwaysFails fails on a one-token state in a worker process "):
        run_fuzz(f"{plugin}:AlwaysFails", "oracle", profile="dev", properties=["equivalence"], max_examples=2,
                 out_dir=tmp_path / "out", jobs=1)


def test_only_cpu_paddle_builtins_run_before_the_fork(plugin: Path) -> None:
    assert not _can_run_before_fork(FuzzConfig("legacy", "single_step", backend="cuda"))
    assert not _can_run_before_fork(FuzzConfig("legacy", f"{plugin}:FailsAfterFork"))


@requires_paddle
def test_cpu_paddle_builtins_do_run_before_the_fork() -> None:
    assert _can_run_before_fork(FuzzConfig("legacy", "single_step"))
    assert _can_run_before_fork(FuzzConfig("oracle", "tail_reset"))


def test_a_script_read_from_stdin_is_fuzzed_in_one_process(plugin: Path, tmp_path: Path) -> None:
    """Fork-server workers re-import the parent's ``__main__``; from ``python - <<EOF`` (``__file__ == "<stdin>"``)
    every worker died and the run ended in a BrokenProcessPool traceback (seen on the H100, gpu_run.sh step 4)."""
    script = (f"from properties.fuzz import run_fuzz\n"
              f"r = run_fuzz({str(plugin) + ':FailsAfterFork'!r}, 'oracle', profile='dev', "
              f"properties=['equivalence', 'truth'], max_examples=4, out_dir={str(tmp_path / 'out')!r}, jobs=2)\n"
              f"print('exit', r.exit_code, sorted(n for n, s in r.properties.items() if s.examples > 0))\n")
    done = subprocess.run([sys.executable, "-"], input=script, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "exit 0 ['equivalence', 'truth']"


SEGFAULTS = '''
import os
from validation.oracle import Oracle


class SegfaultsOnBigBatches(Oracle):
    """The truth, until a batch of more than three requests: then its process dies of SIGSEGV, as a plug-in
    kernel that reads out of bounds does."""

    def __call__(self, inputs):
        if len(inputs["seq_lens_this_time"]) > 3:
            os.kill(os.getpid(), 11)
        return super().__call__(inputs)
'''


def _finishes_one_then_dies(config: FuzzConfig, share: list[str], send) -> None:
    """A worker that ends its first property (5 examples) and dies of SIGSEGV in its second."""
    collector = Collector(config)
    send(("start", share[0]))
    collector.start(share[0]).examples = 5
    send(("done", collector))
    send(("start", share[1]))
    os.kill(os.getpid(), signal.SIGSEGV)


def _finishes(config: FuzzConfig, share: list[str], send) -> None:
    collector = Collector(config)
    for name in share:
        send(("start", name))
        collector.start(name).examples = 7
        send(("done", collector))


def _broken_baseline(config: FuzzConfig, share: list[str], send) -> str:
    return "oracle fails on a one-token state in a worker process (RuntimeError: no device)"


def _hangs(config: FuzzConfig, share: list[str], send) -> None:
    send(("start", share[0]))
    time.sleep(600)


def test_a_dead_worker_costs_only_the_property_it_was_running() -> None:
    """Before: a worker that died broke the whole ``ProcessPoolExecutor``: every worker's results were lost and
    the run ended in a BrokenProcessPool traceback."""
    context = multiprocessing.get_context("fork")
    config = FuzzConfig("oracle", "oracle")
    seen: list[str] = []
    outcome = run_shares(context, config, [["truth", "invariants", "determinism"], ["equivalence"]],
                         lambda c, share, send: (_finishes_one_then_dies if share[0] == "truth" else _finishes)(
                             c, share, send), on_property=lambda stats: seen.append(stats.name))
    stats = outcome.collector.stats
    assert outcome.baseline_failure is None
    assert (stats["truth"].examples, stats["truth"].failed) == (5, False)  # ended before the crash: kept
    assert (stats["equivalence"].examples, stats["equivalence"].failed) == (7, False)  # the other worker: untouched
    assert stats["invariants"].failed and stats["invariants"].error == (
        "its worker process was killed by SIGSEGV while running it (a crash in the code under test; the findings "
        "it wrote are kept)")
    assert stats["determinism"].failed and stats["determinism"].error == (
        "not run: its worker process was killed by SIGSEGV before it started")
    assert sorted(seen) == ["determinism", "equivalence", "invariants", "truth"]


def _dies_leaving_a_child(config: FuzzConfig, share: list[str], send) -> None:
    """A worker whose own child (a server the code under test started) outlives it, holding the pipe open."""
    if os.fork() == 0:
        time.sleep(20)
        os._exit(0)
    send(("start", share[0]))
    os.kill(os.getpid(), signal.SIGSEGV)


def test_a_worker_has_ended_when_its_process_has_even_if_a_child_holds_its_pipe() -> None:
    started = time.perf_counter()
    outcome = run_shares(multiprocessing.get_context("fork"), FuzzConfig("oracle", "oracle"), [["truth"]],
                         _dies_leaving_a_child)
    assert time.perf_counter() - started < 10  # not the 20 s the child holds the pipe
    assert "killed by SIGSEGV while running it" in outcome.collector.stats["truth"].error


def _stops_at_its_first_failure(config: FuzzConfig, share: list[str], send) -> None:
    collector = Collector(config)
    send(("start", share[0]))
    collector.start(share[0]).failed = True
    send(("done", collector))


def test_a_worker_that_stopped_at_a_failure_lost_nothing() -> None:
    """``stop_at_first_failure`` (mutation testing): the properties a healthy worker skipped are not failures."""
    outcome = run_shares(multiprocessing.get_context("fork"), FuzzConfig("oracle", "oracle"),
                         [["truth", "invariants"]], _stops_at_its_first_failure)
    assert list(outcome.collector.stats) == ["truth"] and outcome.collector.stats["truth"].error is None


def _raises_in_its_second_property(config: FuzzConfig, share: list[str], send) -> None:
    _finishes(config, share[:1], send)
    send(("start", share[1]))
    raise RuntimeError("plug-in table lookup failed\nsecond line of the message")


def test_an_exception_that_escapes_a_worker_is_its_property_s_one_line_error() -> None:
    outcome = run_shares(multiprocessing.get_context("fork"), FuzzConfig("oracle", "oracle"),
                         [["truth", "invariants", "determinism"]], _raises_in_its_second_property)
    stats = outcome.collector.stats
    assert not stats["truth"].failed and stats["truth"].examples == 7
    assert stats["invariants"].failed and stats["invariants"].error == "RuntimeError: plug-in table lookup failed"
    assert stats["determinism"].error == "not run: RuntimeError: plug-in table lookup failed before it started"


def test_a_baseline_broken_in_one_worker_stops_the_others_at_once() -> None:
    context = multiprocessing.get_context("fork")
    started = time.perf_counter()
    outcome = run_shares(context, FuzzConfig("oracle", "oracle"), [["truth"], ["equivalence"]],
                         lambda c, share, send: (_broken_baseline if share[0] == "truth" else _hangs)(c, share, send))
    assert outcome.baseline_failure.startswith("oracle fails on a one-token state in a worker process")
    assert time.perf_counter() - started < 60  # the hanging worker was stopped, not waited for (600 s)


@pytest.mark.parametrize("jobs", ["2", "1"])
def test_a_plug_in_that_segfaults_fails_the_run_in_one_line(tmp_path: Path, jobs: str) -> None:
    """With one worker as with two: the crash fails what it hit, the report prints (``--jobs 1`` used to die)."""
    (tmp_path / "segfaults.py").write_text(SEGFAULTS)
    done = subprocess.run(
        [sys.executable, "-m", "validation.cli", "fuzz", "--baseline", "oracle", "--candidate",
         f"{tmp_path / 'segfaults.py'}:SegfaultsOnBigBatches", "--profile", "dev", "--max-examples", "20",
         "--properties", "equivalence,truth", "--jobs", jobs, "--out", str(tmp_path / "out")],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "BrokenProcessPool" not in done.stderr + done.stdout
    assert "(by block size )" not in done.stderr  # a property that died on its first state has no sizes to list
    hit = "FAILED {} with an error: its worker process was killed by SIGSEGV while running it"
    never = "FAILED {} with an error: not run: its worker process was killed by SIGSEGV before it started"
    if jobs == "2":  # a worker each: both crash on their own big batches
        assert all(hit.format(p) in done.stdout for p in ("equivalence", "truth")), done.stdout
    else:  # one worker runs them in turn (costliest first): the first kills it, the other never starts
        first, second = ("equivalence", "truth") if hit.format("equivalence") in done.stdout else ("truth", "equivalence")
        assert hit.format(first) in done.stdout and never.format(second) in done.stdout, done.stdout


def test_an_in_process_run_raises_the_young_threshold_and_gives_back_the_callers(tmp_path: Path) -> None:
    """The run collects young garbage less often while it fuzzes, and a library caller keeps its own setting."""
    before = gc.get_threshold()
    gc.set_threshold(123, 4, 5)
    during: list[tuple[int, int, int]] = []
    try:
        run_fuzz("oracle", "oracle", profile="dev", properties=["equivalence"], max_examples=2,
                 out_dir=tmp_path / "out", in_process=True, progress=lambda _: during.append(gc.get_threshold()))
        assert during == [(GC_YOUNG_THRESHOLD, 4, 5)]  # raised while the property ran, the older generations kept
        assert gc.get_threshold() == (123, 4, 5)
    finally:
        gc.set_threshold(*before)
