"""Output paths every command writes (``--out``, ``--json``, ``--plot``, ``--reduce``) are checked before any work,
and every write replaces its file in one step.

Why: a typo in an output path used to surface as a traceback after the work was done (``mutants --json`` after
the whole catalogue, ``e2e --json`` after three model runs), losing the results it was asked to keep.
"""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from support import STATES, requires_paddle
from validation.atomic_file import write_text
from validation.cli import main
from validation.options import output_file

STATE = str(STATES / "spec_decode.json")

# (command line before the output option, the option): one per command that writes a file or folder.
WRITERS = [
    (["fuzz", "--profile", "dev"], "--out", "folder"),
    (["run"], "--out", "folder"),
    (["run"], "--json", "file"),
    (["mutants", "--only", "WrongPast255"], "--json", "file"),
    (["check", "--state", STATE], "--reduce", "file"),
    (["bench", "--backend", "paddle"], "--json", "file"),
    (["bench", "--backend", "paddle"], "--plot", "file"),
    (["fidelity"], "--out", "folder"),
    (["e2e"], "--json", "file"),
    (["ifeval", "score", "--responses", "r.jsonl"], "--json", "file"),
    (["ifeval", "score", "--responses", "r.jsonl"], "--details", "file"),
    (["ifeval", "run", "--base-url", "http://127.0.0.1:9", "--model", "m"], "--out", "folder"),
    (["ifeval", "compare", "a", "b"], "--out", "folder"),
    (["ifeval", "history", "a"], "--out", "folder"),
]


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    captured = capsys.readouterr()
    assert info.value.code == 2 and captured.out == "", captured.out[:300]
    assert captured.err.count("\n") == 1, captured.err
    return captured.err


@pytest.mark.parametrize(("argv", "option", "kind"), WRITERS, ids=[" ".join(w[0][:2]) + " " + w[1] for w in WRITERS])
def test_an_output_under_a_file_is_refused_in_one_line_before_any_work(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], option: str, kind: str) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    err = _refused([*argv, option, str(blocker / "sub" / "out.json")], capsys)
    assert f"argument {option}: cannot make the folder" in err and "is a file" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]  # nothing made


@pytest.mark.parametrize(("argv", "option", "kind"), WRITERS, ids=[" ".join(w[0][:2]) + " " + w[1] for w in WRITERS])
def test_a_folder_for_a_file_or_a_file_for_a_folder_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], option: str, kind: str) -> None:
    if kind == "file":
        err = _refused([*argv, option, str(tmp_path)], capsys)
        assert "is a directory; give the file to write" in err
    else:
        (tmp_path / "a-file").write_text("x")
        err = _refused([*argv, option, str(tmp_path / "a-file")], capsys)
        assert "is a file, not a folder" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into any folder: a read-only folder cannot be tested")
def test_a_read_only_folder_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tmp_path.chmod(0o500)
    try:
        err = _refused(["mutants", "--json", str(tmp_path / "m.json")], capsys)
    finally:
        tmp_path.chmod(0o700)
    assert "is not writable" in err


def test_a_new_nested_folder_is_made_when_written(tmp_path: Path) -> None:
    target = write_text(tmp_path / "a" / "b" / "report.json", "{}\n")
    assert target.read_text() == "{}\n"
    assert os.stat(target).st_mode & 0o777 == 0o666 & ~_umask()  # not mkstemp's owner-only 0o600


def test_a_failed_write_keeps_the_old_file_whole_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = write_text(tmp_path / "report.json", "old\n")
    with pytest.raises(UnicodeEncodeError):
        write_text(target, "new \ud800\n")  # a lone surrogate cannot be encoded: the write fails half-way
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_a_durable_write_syncs_the_file_and_then_its_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[bool] = []  # per fsync: whether it was a folder
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    write_text(tmp_path / "report.json", "{}\n")
    assert synced == [False, True]  # the data before the rename, the folder's entry after it
    synced.clear()
    write_text(tmp_path / "case.json", "{}\n", durable=False)
    assert synced == []


def test_a_symlink_is_followed_and_kept(tmp_path: Path) -> None:
    real = write_text(tmp_path / "2026-12-07.json", "old\n")
    link = tmp_path / "latest.json"
    link.symlink_to(real.name)
    write_text(link, "new\n")
    assert link.is_symlink() and real.read_text() == "new\n"


def test_a_pipe_is_written_in_place_not_renamed_over(tmp_path: Path) -> None:
    # As --json /dev/stdout: a rename over it would replace the device node (a FIFO here, so no test touches /dev).
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    assert output_file(str(fifo)) == fifo
    write_text(fifo, "report\n")
    reader.join(timeout=10)
    assert got == ["report\n"] and stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


@requires_paddle  # single_step is a Paddle model
def test_the_check_reduce_target_is_made_in_a_new_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "new" / "small.json"
    code = main(["check", "--state", str(STATES / "chunked_prefill.json"), "--baseline", "oracle", "--candidate", "single_step", "--strict",
                 "--layers", "1", "--reduce", str(out)])
    captured = capsys.readouterr()
    assert code == 1 and out.is_file(), captured.out[-500:]
    assert f"wrote {out}" in captured.out


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
