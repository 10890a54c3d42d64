"""The ``mutants`` subcommand: the mutation score of the property suite, as a table."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from properties import profiles
from properties.config import parse_block_sizes
from properties.mutation import RIGHT_BASELINE, MutantOutcome, catalogue_specs, run_mutants, score
from validation import seam
from validation.errors import InputError
from validation.impls import mutants


def register(sub: argparse._SubParsersAction) -> None:
    cmd = sub.add_parser(
        "mutants", help="run the property suite against each seeded bug: killed or survived, and how fast",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="exit status: 0 every mutant killed, 1 a mutant survived, 2 bad input\n"
        "examples:\n  dsa-validate mutants --profile ci --json mutants.json\n"
        "  dsa-validate mutants --candidate /tmp/m.py:fn\n"
        f"catalogue: {', '.join(mutants.MUTANTS)}")
    cmd.add_argument("--profile", choices=profiles.PROFILE_NAMES, default="ci", help="hypothesis profile (default: ci)")
    cmd.add_argument("--only", metavar="NAME,NAME", help="run only these catalogue mutants")
    cmd.add_argument("--candidate", action="append", default=[], metavar="SPEC",
                     help="an outside mutant (module:NAME or path/file.py:NAME); repeatable; replaces the catalogue")
    cmd.add_argument("--block-sizes", default="64", metavar="N,N,...", help="block sizes of the single-state layer")
    cmd.add_argument("--backend", choices=seam.BACKENDS, default="paddle", help="backend of the built-in baselines")
    cmd.add_argument("--no-baseline", action="store_true", help="skip the second run against the right baseline")
    cmd.add_argument("--json", type=Path, metavar="FILE", help="also write the outcomes and the score as JSON")
    cmd.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.candidate:
        specs = args.candidate
        for spec in specs:
            seam.resolve(spec)  # a bad spec is exit 2 now, not a survivor later
    else:
        names = [n.strip() for n in args.only.split(",")] if args.only else None
        for name in names or ():
            if name not in mutants.MUTANTS:
                raise InputError("--only", f"unknown mutant {name!r} (see dsa-validate mutants --help)")
        specs = catalogue_specs(names)
    outcomes = run_mutants(specs, progress=lambda line: print(line, file=sys.stderr, flush=True),
                           profile=args.profile, block_sizes=parse_block_sizes(args.block_sizes),
                           backend=args.backend, check_baseline=not args.no_baseline)
    summary = score(outcomes)
    print(render(outcomes, summary))
    if args.json:
        args.json.write_text(json.dumps({"score": summary, "mutants": [o.to_dict() for o in outcomes]}, indent=1) + "\n")
    return 0 if not summary["survivors"] else 1


def render(outcomes: list[MutantOutcome], summary: dict) -> str:
    head = f"{'mutant':<28} {'class':>5}  {'verdict':<8} {'caught by':<30} {'examples':>8} {'seconds':>8}  baseline"
    lines = [head, "-" * len(head)]
    for o in outcomes:
        by = f"{o.property} ({o.layer})" if o.killed else "-"
        base = {True: f"also ({RIGHT_BASELINE})", False: "missed", None: "-"}[o.killed_by_baseline]
        lines.append(f"{o.name:<28} {o.bug_class if o.bug_class is not None else '-':>5}  "
                     f"{'killed' if o.killed else 'SURVIVED':<8} {by:<30} {o.examples_to_kill or '-':>8} "
                     f"{(f'{o.seconds_to_kill:.2f}' if o.seconds_to_kill is not None else '-'):>8}  {base}")
    for o in outcomes:
        if o.counterexample is None:
            continue
        state = json.dumps(o.counterexample["state"], separators=(",", ":"))
        earlier = len(o.counterexample.get("history", ()))
        lines.append(f"{o.name}: {o.description}")
        lines.append(f"  minimal: {state}" + (f" (after {earlier} earlier steps, kept in the file)" if earlier else ""))
        lines.append(f"  reproduce: dsa-validate check --state {o.counterexample_path} --baseline oracle --candidate {o.spec}")
    lines.append(f"mutation score: {summary['killed']}/{summary['mutants']} killed; median time to kill "
                 f"{summary['median_seconds_to_kill']}s, median examples to kill {summary['median_examples_to_kill']}")
    if summary["survivors"]:
        lines.append(f"SURVIVED: {', '.join(summary['survivors'])}")
    return "\n".join(lines)
