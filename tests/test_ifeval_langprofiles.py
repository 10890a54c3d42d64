"""The cached langdetect profiles hold exactly what langdetect's own factory loads, bit for bit."""

from __future__ import annotations

from pathlib import Path

import pytest

from evals.ifeval import langid, langprofiles


def test_cache_equals_langdetects_own_profiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    np = pytest.importorskip("numpy")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    langprofiles.load.cache_clear()
    try:
        built = langprofiles.load()  # from langdetect, then written
        written = list(tmp_path.rglob("langdetect-*-profiles-*.npz"))
        assert len(written) == 1
        langprofiles.load.cache_clear()
        cached = langprofiles.load()  # read back from the file
    finally:
        langprofiles.load.cache_clear()
    fac = langid.factory()
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
    langprofiles.load.cache_clear()
    try:
        path = langprofiles._cache_path()
        path.parent.mkdir(parents=True)
        path.write_bytes(b"not an npz")
        profiles = langprofiles.load()
        assert len(profiles.rows) == len(langid.factory().word_lang_prob_map)
        langprofiles.load.cache_clear()
        assert langprofiles.load().rows == profiles.rows  # the rebuilt file reads back
    finally:
        langprofiles.load.cache_clear()
