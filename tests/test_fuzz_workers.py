"""The fuzzer's worker processes: sides that cannot survive a fork get fresh workers, and a baseline that cannot
run in its workers ends the run with exit 2, never a pass.

Why: the parent ran both sides once before it forked its workers (Paddle's import and probe, shared). On a GPU
that made a CUDA context the forked workers could not use: every call there failed, both sides "crashed" on
every state, and ``fuzz --backend cuda`` reported SHARED-BUGs and exit 0 having judged nothing. A plug-in that
fails after a fork stands in for that here, on any machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from properties.config import FuzzConfig
from properties.fuzz import _can_run_before_fork, run_fuzz
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


def test_a_baseline_that_never_runs_ends_a_single_process_run_too(plugin: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"AlwaysFails fails on a one-token state \(RuntimeError: no device\)"):
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
