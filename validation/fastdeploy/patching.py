"""A patch is a candidate: apply a unified diff to a temporary copy of a checkout, never to the checkout itself.

``fastdeploy:PATH+FILE.patch`` names the checkout at PATH with FILE applied (``git apply -p1``, run in the copy;
git need not know the folder). The copy lives in a temporary folder for this process and is removed at exit by
the process that made it. A patch that does not apply is exit 2 with git's first line.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from validation.errors import InputError


@functools.lru_cache(maxsize=16)
def patched_copy(root: str, patch: str) -> Path:
    """A temporary copy of the checkout at ``root`` with ``patch`` applied (made once per process)."""
    patch_path = Path(patch).expanduser()
    if not patch_path.is_file():
        raise InputError("fastdeploy", f"{patch}: no such patch file")
    source = Path(root).expanduser()
    if not source.is_dir():
        raise InputError("fastdeploy", f"{root}: not a directory (expected a FastDeploy checkout root)")
    work = Path(tempfile.mkdtemp(prefix="dsa-fd-patched-"))
    owner = os.getpid()
    atexit.register(lambda: os.getpid() == owner and shutil.rmtree(work, ignore_errors=True))
    copy = work / f"{source.resolve().name}+{patch_path.stem}"
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns(".git"), symlinks=True)
    try:
        done = subprocess.run(["git", "apply", "-p1", "--whitespace=nowarn", str(patch_path.resolve())], cwd=copy,
                              capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InputError("fastdeploy", f"{patch}: cannot run git apply ({type(exc).__name__})") from None
    if done.returncode != 0:
        first = (done.stderr.strip().splitlines() or ["git apply failed"])[0]
        raise InputError("fastdeploy", f"{patch}: does not apply to {root}: {first}")
    return copy
