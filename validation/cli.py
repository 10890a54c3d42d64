"""``dsa-validate``: one console script, one subcommand per job.

Each job lives in its own module and contributes its subparser through ``register(subparsers)``;
this module only assembles them and owns the error contract: bad input is one line on stderr and
exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from validation.errors import InputError, MissingDependency

# Modules that each add one or more subcommands; imported lazily-light (no Paddle at import time).
COMMAND_MODULES = (
    "validation.commands",
    "validation.main_job",
    "evals.cli",
    "properties.mutation_cli",
    "properties.cli",
    "evals.engine.serve_cli",
    "evals.engine.e2e",
    "validation.bench.cli",
)

# Commands whose module is known up front: ``dsa-validate ifeval ...`` imports only evals.cli, not every
# module above (numpy, hypothesis, Paddle probes), so a scoring run pays only for what it uses. Every
# other command, and ``--help``, still assembles the whole parser from COMMAND_MODULES.
DIRECT_COMMANDS = {"ifeval": "evals.cli"}


class _Parser(argparse.ArgumentParser):
    """argparse parser whose usage errors are one line plus exit 2 (argparse's own default is 2 too)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser(modules: Sequence[str] = COMMAND_MODULES) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="dsa-validate",
        description="Validate FastDeploy's DSA slot mapping bit for bit, and score IFEval runs.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  dsa-validate run\n  dsa-validate check --state fixtures/states/chunked_prefill.json\n"
        "  dsa-validate fuzz --profile ci\n  dsa-validate ifeval score --responses R.jsonl --data input_data.jsonl",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in modules:
        importlib.import_module(name).register(sub)
    return parser


def _modules_for(argv: Sequence[str]) -> Sequence[str]:
    """Only the module of a command named first (see DIRECT_COMMANDS), else all of them."""
    module = DIRECT_COMMANDS.get(argv[0]) if argv else None
    return (module,) if module in COMMAND_MODULES else COMMAND_MODULES


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_modules_for(argv))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (InputError, MissingDependency) as exc:
        print(f"dsa-validate {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into head & co.: not an error of ours
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"dsa-validate {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
