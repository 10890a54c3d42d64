"""The language detector's own guarantees: its cached profiles hold exactly what langdetect's factory loads,
bit for bit, and a child forked while another thread uses the detector finds its lock free.

(That its answers equal langdetect's is ``test_ifeval_fast_paths.py``'s job.)
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from evals.ifeval import language


def test_cache_equals_langdetects_own_profiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    np = pytest.importorskip("numpy")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    fac = language.detector().factory()
    built = language.load_profiles(lambda: fac)  # from langdetect, then written
    written = list(tmp_path.rglob("langdetect-*-profiles-*.npz"))
    assert len(written) == 1 and written[0] == language._cache_path()
    cached = language.load_profiles(_never)  # read back from the file
    grams = list(fac.word_lang_prob_map)
    assert cached.langlist == built.langlist == tuple(fac.langlist)
    assert list(cached.rows) == grams and cached.rows == {g: i for i, g in enumerate(grams)}
    expected = np.array([fac.word_lang_prob_map[g] for g in grams], dtype=np.float64)
    for profiles in (built, cached):
        dense = profiles.dense(list(range(len(grams))))
        assert dense.tobytes() == expected.tobytes()  # every probability, bit for bit
    picked = [5, 0, 5, len(grams) - 1]
    assert cached.dense(picked).tobytes() == expected[picked].tobytes()


def test_an_unreadable_cache_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = language._cache_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not an npz")
    fac = language.detector().factory()
    profiles = language.load_profiles(lambda: fac)
    assert len(profiles.rows) == len(fac.word_lang_prob_map)
    assert language.load_profiles(_never).rows == profiles.rows  # the rebuilt file reads back


def _never() -> None:
    raise AssertionError("the profiles should have come from the cache, not from langdetect")


def test_a_fork_waits_for_the_detector_and_the_child_can_detect() -> None:
    detector = language.detector()
    detector.prepare()
    held = threading.Event()

    def hold_the_lock() -> None:  # another thread in the middle of a detection when the fork is asked for
        with detector._lock:
            held.set()
            time.sleep(0.2)

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    assert held.wait(5)
    pid = os.fork()  # the at-fork handler waits until the holder lets go
    if pid == 0:
        code = 1
        try:
            code = 0 if detector.detect_many(["Bonjour tout le monde, comment allez-vous ?"]) == ["fr"] else 3
        finally:
            os._exit(code)
    holder.join()
    deadline = time.monotonic() + 30
    while True:
        finished, status = os.waitpid(pid, os.WNOHANG)
        if finished or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if not finished:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    assert finished, "the forked child blocked on the detector's lock"
    assert os.waitstatus_to_exitcode(status) == 0
    assert detector.language_of("Hello there, how are you doing today?") == "en"  # the parent's lock is free
