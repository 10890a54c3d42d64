"""``dsa-validate``: one console script, one subcommand per job.

Each package registers its own subcommands through ``register(subparsers)`` in its ``cli`` module; this module
imports them statically and owns the error contract: bad input is one line on stderr and exit code 2, never a
traceback. The imports sit inside ``_registrars`` so that ``dsa-validate ifeval ...`` loads only the IFEval
scorer and client (no numpy, hypothesis or Paddle probes), which is what its whole-process timing measures.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from validation.errors import InputError, MissingDependency

Registrar = Callable[[argparse._SubParsersAction], None]


class _Parser(argparse.ArgumentParser):
    """argparse parser whose usage errors are one line plus exit 2 (argparse's own default is 2 too)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _registrars(first: str | None) -> list[Registrar]:
    """The registering functions of every package, or only IFEval's when the command is ``ifeval``."""
    from evals.ifeval import cli as ifeval_cli

    if first == "ifeval":
        return [ifeval_cli.register]
    from evals.e2e import cli as e2e_cli
    from evals.serve import cli as serve_cli
    from properties import cli as properties_cli
    from validation.bench import cli as bench_cli
    from validation.cli.fidelity_command import register as register_fidelity
    from validation.cli.main_job import register as register_run
    from validation.cli.slot_commands import register as register_slots

    return [register_slots, register_run, ifeval_cli.register, properties_cli.register_mutants,
            properties_cli.register, serve_cli.register, e2e_cli.register, bench_cli.register, register_fidelity]


def build_parser(first: str | None = None) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="dsa-validate",
        description="Validate FastDeploy's DSA slot mapping bit for bit, and score IFEval runs.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  dsa-validate run\n  dsa-validate check --state fixtures/states/chunked_prefill.json\n"
        "  dsa-validate fuzz --profile ci\n  dsa-validate ifeval score --responses R.jsonl --data input_data.jsonl",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for register in _registrars(first):
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv[0] if argv else None)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (InputError, MissingDependency) as exc:
        print(f"dsa-validate {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into head & co.: not an error of ours
        sys.stderr.close()
        return 0
    except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM where a command turns it into one (``signal_name``)
        terminated = getattr(stop, "signal_name", "SIGINT") == "SIGTERM"
        print(f"dsa-validate {args.command}: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return 143 if terminated else 130
