"""The ``fuzz`` and ``mutants`` subcommands: the property suite's findings, and its mutation score.

``fuzz`` runs the property suite and prints findings grouped by triage class and scenario.

Output: one progress line per property, then the findings summary; for each failure and each
finding group, the minimal state as JSON (also written under ``--out``) and the one-line
``dsa-validate check`` command that reproduces it. Exit 1 on a REGRESSION (with ``--strict``: any
finding) or a required scenario never generated; 0 otherwise; 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import fixtures
from properties import profiles
from properties.config import DEFAULT_OUT, PROPERTY_LAYERS, parse_block_sizes
from properties.fuzz import FuzzInterrupted, FuzzResult, run_fuzz
from properties.time_budget import parse_duration
from properties.mutation import RIGHT_BASELINE, MutantOutcome, catalogue_specs, run_mutants, score
from validation import atomic_file, seam
from validation.errors import InputError
from validation.impls import mutants
from validation.options import (add_backend, add_layers, add_pad_contract, add_sides, output_file, output_folder,
                                positive_int)

REGRESSIONS_DIR = fixtures.ROOT / "regressions"


def register(sub: argparse._SubParsersAction) -> None:
    fuzz = sub.add_parser(
        "fuzz", help="property-based fuzzing: candidate vs baseline and oracle over generated server states",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="exit status: 0 no regression, 1 a REGRESSION (with --strict: any finding) or a required scenario\n"
        "never generated, 2 bad input\n"
        "examples:\n  dsa-validate fuzz --profile ci\n"
        "  dsa-validate fuzz --baseline oracle --candidate chunked_fix --block-sizes 16,64,128\n"
        "  dsa-validate fuzz --sweep-block-sizes --profile nightly --save-regressions")
    add_sides(fuzz, baseline_note="; oracle checks against the truth")
    sizes = fuzz.add_mutually_exclusive_group()
    sizes.add_argument("--block-sizes", default="64", metavar="N,N,...", help="block sizes to draw from (default: 64)")
    sizes.add_argument("--sweep-block-sizes", action="store_true", help="draw block sizes from 1,16,32,48,64,100,128,256")
    fuzz.add_argument("--profile", choices=profiles.PROFILE_NAMES, default="ci",
                      help="dev (seconds), ci (derandomised, ~1 minute), nightly (long, example database on)")
    fuzz.add_argument("--properties", default=",".join(profiles.PROPERTIES), metavar="P,P,...",
                      help=f"which properties to run (default: all of {','.join(profiles.PROPERTIES)})")
    fuzz.add_argument("--max-examples", type=positive_int, metavar="N", help="examples per property, overriding the profile")
    fuzz.add_argument("--time-budget", metavar="DURATION",
                      help="end on time (e.g. 90s, 45m, 1h) with a complete report; properties share the time by cost, "
                           "and time the example budgets leave goes to required scenarios still missing")
    fuzz.add_argument("--fill-budget", action="store_true",
                      help="with --time-budget: keep fuzzing until it is spent (once every required scenario is "
                           "reached, rounds of every property at every block size, each with a new seed)")
    fuzz.add_argument("--seed", type=int, help="fixed hypothesis seed (instead of the profile's)")
    fuzz.add_argument("--jobs", type=positive_int, metavar="N",
                      help="worker processes sharing the properties (default: one per CPU); even 1 is a process of "
                           "its own, so a crash in the code under test fails only the property it hit")
    fuzz.add_argument("--strict", action="store_true", help="exit 1 on any finding, not only a REGRESSION")
    fuzz.add_argument("--no-known", action="store_true",
                      help="fail on findings recorded in fixtures/known_findings.json too (they are always reported)")
    fuzz.add_argument("--out", type=output_folder, default=DEFAULT_OUT, metavar="DIR",
                      help=f"where counterexamples and finding states are written (default: {DEFAULT_OUT})")
    fuzz.add_argument("--save-regressions", action="store_true",
                      help="also copy each failure's minimal state into fixtures/regressions/")
    fuzz.add_argument("--json", action="store_true", help="print the result as JSON instead of text")
    add_backend(fuzz)
    add_layers(fuzz, PROPERTY_LAYERS)
    add_pad_contract(fuzz)
    fuzz.add_argument("--pre-serving", action="store_true",
                      help="let the state machine skip the server's start-up (profile run, capture warm-up): a "
                           "zero-filled first step, which no served step sees")
    fuzz.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    block_sizes = parse_block_sizes(args.block_sizes, sweep=args.sweep_block_sizes)
    progress = None if args.json else (lambda line: print(line, file=sys.stderr, flush=True))
    try:
        result = _fuzz(args, block_sizes, progress)
    except FuzzInterrupted as stop:  # Ctrl-C or SIGTERM: what each property found until then is still reported
        result = stop.result
    if args.save_regressions:
        save_regressions(result)
    print(json.dumps(result.to_dict()) if args.json else render(result))
    return result.exit_code


def _fuzz(args: argparse.Namespace, block_sizes: tuple[int, ...], progress: Callable[[str], None] | None) -> FuzzResult:
    return run_fuzz(
        args.baseline, args.candidate, profile=args.profile, block_sizes=block_sizes, sweep=args.sweep_block_sizes,
        backend=args.backend, layers=args.layers, strict=args.strict,
        properties=[p.strip() for p in args.properties.split(",") if p.strip()],
        progress=progress, max_examples=args.max_examples, seed=args.seed, out_dir=args.out, use_known=not args.no_known,
        pad_contract=args.pad_contract, pre_serving=args.pre_serving, jobs=args.jobs,
        time_budget=None if args.time_budget is None else parse_duration(args.time_budget),
        fill_budget=args.fill_budget)


def save_regressions(result: FuzzResult) -> list[Path]:
    """Copy each failed property's minimal counterexample into ``fixtures/regressions/``."""
    REGRESSIONS_DIR.mkdir(parents=True, exist_ok=True)
    saved = []
    for name, stats in result.properties.items():
        if stats.path is not None:
            target = REGRESSIONS_DIR / f"{result.config.candidate.replace(':', '_').replace('/', '_')}_{name}.json"
            shutil.copyfile(stats.path, target)
            saved.append(target)
    return saved


def render(result: FuzzResult) -> str:
    """The findings summary: totals, groups by verdict and scenario, failures with reproduction lines."""
    cfg = result.config
    lines = [f"fuzz {cfg.baseline} vs {cfg.candidate} (profile {result.profile}, block sizes "
             f"{','.join(map(str, cfg.block_sizes))}, {cfg.layers} layers): {result.examples} states in "
             f"{result.seconds:.1f}s" + (f" (time budget {result.time_budget:.0f}s)" if result.time_budget else "")]
    if result.interrupted:
        lines.append(f"INTERRUPTED by {result.interrupted}: a partial report, what each property found until then; "
                     f"not finished: {', '.join(result.unfinished) or 'none'}; scenarios are not judged")
    lines += _coverage(result)
    if result.groups:
        lines.append("findings by triage class and scenario:")
    for group in result.groups:
        consumers = ", ".join(f"{c} {n}" for c, n in group.consumers.most_common())
        lines.append(f"  {group.verdict:<10} {group.scenario}: {group.count} elements ({consumers}) "
                     f"in {', '.join(sorted(group.properties))}")
        if group.known:
            lines.append(f"    KNOWN, not failing the gate (--no-known to fail on it): {group.known}")
        if group.case is not None and group.path is not None:
            lines.append(f"    smallest: {_shown(group.case.state.to_json(), group.path)}")
            lines.append(f"    reproduce: {cfg.reproduce(group.path)}")
    for name, stats in result.properties.items():
        if not stats.failed:
            continue
        if stats.examples_to_failure is None:  # an error, not a failing example, ended it
            # A dead worker's last property comes back with no statistics: how far it got is unknown, not 0.
            after = f" after {stats.examples} examples" if stats.examples else ""
            lines.append(f"FAILED {name} with an error{after}: {stats.error}")
        else:
            lines.append(f"FAILED {name} after {stats.examples_to_failure} examples "
                         f"({(stats.seconds_to_failure or 0):.1f}s){': ' + stats.error if stats.error else ''}")
        if stats.cut_short:
            lines.append(f"  shrinking was cut short by {'the interruption' if stats.interrupted else 'the time budget'}"
                         ": the smallest failing state found so far")
        if stats.counterexample is not None:
            state_json = json.dumps(stats.counterexample["state"], separators=(",", ":"))
            lines.append(f"  minimal state: {_shown(state_json, stats.path)}")
            if "history" in stats.counterexample:
                lines.append(f"  after {len(stats.counterexample['history'])} earlier steps on the same instances "
                             "(in the file's history; check replays them first)")
            lines.append(f"  reproduce: {cfg.reproduce(stats.path)}")
    if result.missing:
        lines.append(f"NOT REACHED (required by profile {result.profile}): {', '.join(result.missing)}")
        lines.append(_reach_hint(result))
    lines.append(f"exit {result.exit_code}")
    return "\n".join(lines)


def _reach_hint(result: FuzzResult) -> str:
    """How to reach what was missed: the profile's example budgets are shared by the block sizes drawn from."""
    sizes = len(result.config.block_sizes)
    shared = f"the profile's examples are shared by {sizes} block sizes; " if sizes > 1 else ""
    if result.time_budget is not None:
        return f"  to reach them: {shared}a longer --time-budget spends more on what is still missing"
    return (f"  to reach them: {shared}--time-budget DURATION (e.g. 10m) spends the time the example budgets "
            "leave on what is missing, or raise --max-examples")


def _coverage(result: FuzzResult) -> list[str]:
    """States per property and block size, properties the time budget cut short, scenarios reached per block size."""
    lines = ["states per property and block size:"]
    for name, stats in result.properties.items():
        sizes = ", ".join(f"{bs}: {n}" for bs, n in sorted(stats.by_block_size.items()))
        cut = f" (cut short by {result.interrupted})" if stats.interrupted else \
            " (cut short by the time budget)" if stats.cut_short else ""
        lines.append(f"  {name}: {stats.examples} ({sizes}){cut}")
    for block_size in result.config.block_sizes:  # the pinned SPEC examples' own block sizes are not required
        tags = result.reached_by_size.get(block_size, {})
        wanted = profiles.required_at(result.profile, block_size)
        held = sorted(t for t in wanted if tags.get(t))
        lines.append(f"  block size {block_size}: {len(held)}/{len(wanted)} "
                     f"required scenarios reached, {len(tags)} scenarios in all")
    gap_rounds = [r for r in result.top_ups if not r["fill"]]  # each round's details: --json's top_up_rounds
    fill_rounds = [r for r in result.top_ups if r["fill"]]
    if gap_rounds:
        lines.append(f"  the time budget's unused time: {len(gap_rounds)} top-up round(s), seed {_seeds(gap_rounds)}, "
                     f"{sum(r['states'] for r in gap_rounds)} states at the block sizes still "
                     f"missing a required scenario; the first round was for: {', '.join(gap_rounds[0]['missing_before'])}")
    if fill_rounds:
        lines.append(f"  --fill-budget: {len(fill_rounds)} more round(s) of every property at every block size, "
                     f"seed {_seeds(fill_rounds)}, {sum(r['states'] for r in fill_rounds)} states")
    return lines


def _seeds(rounds: list[dict]) -> str:
    return str(rounds[0]["seed"]) + (f"-{rounds[-1]['seed']}" if len(rounds) > 1 else "")


def _shown(text: str, path: Path | None, limit: int = 1500) -> str:
    """A state's JSON inline, or where to find it when it is too long to read on a terminal."""
    return text if len(text) <= limit else f"{len(text)} characters of JSON, in {path}"


def register_mutants(sub: argparse._SubParsersAction) -> None:
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
    add_backend(cmd)
    cmd.add_argument("--no-baseline", action="store_true", help="skip the second run against the right baseline")
    cmd.add_argument("--json", type=output_file, metavar="FILE", help="also write the outcomes and the score as JSON")
    cmd.set_defaults(func=run_mutants_command)


def run_mutants_command(args: argparse.Namespace) -> int:
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
    print(render_mutants(outcomes, summary))
    if args.json:
        atomic_file.write_text(args.json, json.dumps({"score": summary, "mutants": [o.to_dict() for o in outcomes]},
                                                     indent=1) + "\n")
    return 0 if not summary["survivors"] else 1


def render_mutants(outcomes: list[MutantOutcome], summary: dict) -> str:
    width = max([28, *(len(o.name) for o in outcomes)])  # an outside mutant's name may be longer
    head = (f"{'mutant':<{width}} {'class':>5}  {'verdict':<8} {'caught by':<30} {'examples':>8} {'seconds':>8}"
            "  baseline")
    lines = [head, "-" * len(head)]
    for o in outcomes:
        by = f"{o.property} ({o.layer})" if o.killed else "-"
        base = {True: f"also ({RIGHT_BASELINE})", False: "missed", None: "-"}[o.killed_by_baseline]
        lines.append(f"{o.name:<{width}} {o.bug_class if o.bug_class is not None else '-':>5}  "
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
    seconds, examples = summary["median_seconds_to_kill"], summary["median_examples_to_kill"]
    lines.append(f"mutation score: {summary['killed']}/{summary['mutants']} killed; median time to kill "
                 f"{'-' if seconds is None else f'{seconds}s'}, median examples to kill "
                 f"{'-' if examples is None else examples}")
    if summary["survivors"]:
        lines.append(f"SURVIVED: {', '.join(summary['survivors'])}")
    return "\n".join(lines)
