"""Replace a file in one step, the one way every command writes what a user produced.

Counterexamples, reports, run metadata and case files are the results of minutes or hours of work: a process
killed mid-write must leave the old file or the new one, never half of either, and a folder that does not exist
yet is made rather than turned into a traceback after the work is done.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path


def write_text(path: str | os.PathLike[str], text: str, *, durable: bool = True) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder and ``os.replace``.

    ``durable`` also syncs the data to disk before the rename and the folder after it (a power cut keeps the new
    file too); the fuzzer's
    counterexample writes, many per run and only needing to survive a kill, turn it off. A symlink is followed
    (the file it names is replaced, the link kept); a device or a pipe (``--json /dev/stdout``) is written in
    place, since renaming over it would replace the device node itself."""
    path = Path(path)
    if path.exists() and not path.is_file() and not path.is_dir():
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        return path
    target = Path(os.path.realpath(path))
    target.parent.mkdir(parents=True, exist_ok=True)
    # A name of its own per call (threads and processes may write the same file), opened with the usual
    # 0o666 less the umask: tempfile.mkstemp would make every report readable by its owner only.
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, target)
        if durable:
            _sync_folder(target.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable: a folder's entries reach the disk when the folder is synced (POSIX; a
    platform that cannot open a folder keeps only the file's own sync)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
