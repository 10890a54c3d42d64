"""The command-line face: the ``dsa-validate`` entry, the main job and its five parts.

The only place under ``validation/`` that imports ``properties`` or ``evals``: the floor below it never reaches up.
"""

from validation.cli.entry import build_parser, main

__all__ = ["build_parser", "main"]
