"""Command-line options and value types shared by every subcommand, defined once.

Stdlib only at import time, so the lightest command (``dsa-validate ifeval score``) can import it. A bad value
becomes argparse's own one-line error naming the option, with exit 2.
"""

from __future__ import annotations

import argparse

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
    parser.add_argument("--layers", type=positive_int, default=default, metavar="N",
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
