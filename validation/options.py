"""argparse value types shared by every subcommand (stdlib only, so the lightest command can import it).

A bad value becomes argparse's own one-line error naming the option, with exit 2.
"""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """Counts and sizes that must be >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value
