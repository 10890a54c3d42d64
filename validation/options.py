"""Command-line options and value types shared by every subcommand, defined once.

Stdlib only at import time, so the lightest command (``dsa-validate ifeval score``) can import it. A bad value
becomes argparse's own one-line error naming the option, with exit 2.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

DEFAULT_BASELINE = "legacy"
DEFAULT_CANDIDATE = "single_step"
SPEC_FORMS = "registry name, module:NAME or path/file.py:NAME"


def positive_int(text: str) -> int:
    """Counts and sizes that must be >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """Durations that must be finite and above 0 (``--timeout``)."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """Finite amounts that may be 0 (``--temperature``, ``--retry-backoff``)."""
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def probability(text: str) -> float:
    """A level strictly between 0 and 1 (``--alpha``)."""
    value = finite_float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must lie strictly between 0 and 1, got {text}")
    return value


def finite_float(text: str) -> float:
    """Any number but NaN and the infinities (``--margin``: a negative margin demands an improvement)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


# The most decoder layers a per-layer path models: DeepSeek-V3.2 has 61, and every layer repeats the same
# computation, so a larger count only repeats work (a typo like 100000000 would run for hours).
MAX_LAYERS = 512


def layer_count(text: str) -> int:
    """``--layers N``: a positive integer no larger than ``MAX_LAYERS``."""
    value = positive_int(text)
    if value > MAX_LAYERS:
        raise argparse.ArgumentTypeError(f"must be <= {MAX_LAYERS} (DeepSeek-V3.2 has 61), got {value}")
    return value


def output_file(text: str) -> Path:
    """A file a command will write (``--json``, ``--reduce``, ``--plot``): checked at parse time, before any work,
    so a typo costs one line and exit 2, not a traceback after a run whose results it then loses."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a directory; give the file to write, e.g. report.json")
    if not (path.exists() and not path.is_file()):  # a device or a pipe (/dev/stdout) is written in place
        _makeable(Path(os.path.realpath(path)).parent, text)
    return path


def output_folder(text: str) -> Path:
    """A folder a command writes into (``--out``): an existing folder, or one that can be made."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a file, not a folder")
    _makeable(path, text)
    return path


def _makeable(folder: Path, text: str) -> None:
    """``folder`` exists or can be made: its nearest existing ancestor is a writable folder. Nothing is made
    here, so a later bad option leaves no empty folder behind."""
    base = folder.absolute()
    while not base.exists():
        base = base.parent
    if not base.is_dir():
        named = repr(text) if folder == Path(text) else f"{str(folder)!r} for {text!r}"
        raise argparse.ArgumentTypeError(f"cannot make the folder {named}: {str(base)!r} is a file")
    if not os.access(base, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot write {text!r}: the folder {str(base)!r} is not writable")


def add_sides(parser: argparse.ArgumentParser, *, baseline_note: str = "") -> None:
    """``--baseline`` and ``--candidate``: the two implementations a command compares."""
    parser.add_argument("--baseline", default=DEFAULT_BASELINE,
                        help=f"reference side (default: {DEFAULT_BASELINE}{baseline_note})")
    parser.add_argument("--candidate", default=DEFAULT_CANDIDATE,
                        help=f"side under test: {SPEC_FORMS} (default: {DEFAULT_CANDIDATE})")


def add_backend(parser: argparse.ArgumentParser, *, default: str = "paddle", help_text: str | None = None) -> None:
    """``--backend``: where the built-in paths run (Paddle, or CUDA kernels through CuPy)."""
    from validation.seam import BACKENDS

    parser.add_argument("--backend", choices=BACKENDS, default=default,
                        help=help_text or f"run built-in paths on Paddle (its current device) or as CUDA kernels via "
                        f"CuPy (default: {default})")


def add_layers(parser: argparse.ArgumentParser, default: int) -> None:
    """``--layers``: how many decoder layers the per-layer paths model and compare."""
    parser.add_argument("--layers", type=layer_count, default=default, metavar="N",
                        help=f"decoder layers to model and compare (default: {default})")


# What a padded row's slot must be. FastDeploy's cache writers skip any negative slot
# (``ds_mla_cache_kernel.cuh@2d8338f9e4e6:100,207,258``: ``if (slot_idx < 0) return``), so any negative value
# is right there; vLLM's contract is exactly ``PAD_SLOT_ID = -1``, so with ``minus-one`` a -2 is a finding.
PAD_CONTRACTS = ("negative", "minus-one")


def add_pad_contract(parser: argparse.ArgumentParser) -> None:
    """``--pad-contract``, the one definition every comparing command (check, fuzz, run) shares."""
    parser.add_argument("--pad-contract", choices=PAD_CONTRACTS, default=PAD_CONTRACTS[0],
                        help="what a padded row's slot must be: negative (FastDeploy's writers skip any negative "
                             "slot; default) or minus-one (vLLM's PAD_SLOT_ID: exactly -1)")
