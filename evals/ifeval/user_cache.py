"""Where the scorer keeps data it derives from its libraries (Punkt's tables, langdetect's profiles).

Why a module of its own: both the text helpers (``text.py``) and the language detector (``language.py``)
write there, and neither should import the other to find the folder. It is per user and never the
repository, so a read-only checkout still scores.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """The per-user cache folder for derived data: ``$XDG_CACHE_HOME/dsa-validation``, else ``~/.cache/...``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "dsa-validation"
