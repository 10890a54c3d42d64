"""``dsa-validate run``: the pre-merge verdict on its embedded defaults, offline.

Five parts, each of which must hold for exit 0:
1. the shipped bug-class states, triaged baseline vs candidate;
2. the property suite under the ``ci`` profile (hypothesis, scheduler-modelled states);
3. the mutant table: every seeded bug must be killed, or the suite has lost its power;
4. ``e2e``: a real small model whose caches are written through the slots under test, baseline vs candidate
   vs the oracle, logits bit for bit;
5. IFEval before/after through two OpenAI-compatible servers (embedded, or ``--before-url``/``--after-url``),
   compared with ``--expect-identical``.
Then one summary in the table form a PR carries, and a verdict. A part that could not run (a missing extra or
weights package) is listed as skipped with its reason and the verdict says INCOMPLETE (exit 1), unless
``--allow-skips``: a skip is never counted as a pass. The parts live in ``validation.cli.job_parts`` and
``validation.cli.ifeval_part``; their heavy imports happen only when they run.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from validation import atomic_file, seam
from validation.cli.ifeval_part import ifeval_part_from_args
from validation.cli.job_parts import e2e_part, fuzz_part, mutants_part, states_part
from validation.cli.part_outcome import Part, known_phrase
from validation.cli.slot_commands import add_impl_options
from validation.errors import InputError
from validation.options import add_pad_contract, add_sides, output_file, output_folder
from validation.verdicts import JobVerdict, PartStatus

PARTS = ("states", "fuzz", "mutants", "e2e", "ifeval")
TITLES = {"states": "shipped bug-class states", "fuzz": "property suite", "mutants": "mutation score",
          "e2e": "end to end (e2e)", "ifeval": "IFEval before/after"}


def register(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser(
        "run", help="the pre-merge verdict: states, fuzzing, mutants, e2e, IFEval before/after",
        formatter_class=argparse.RawDescriptionHelpFormatter, description=__doc__.split("\n\n")[1],
        epilog="exit status: 0 every part held, 1 a part failed (or was skipped, without --allow-skips), "
        "2 bad input\nexamples:\n  dsa-validate run\n  dsa-validate run --candidate my_kernel.py:Slots --parts states,fuzz\n"
        "  dsa-validate run --parts ifeval --before-url http://a:8188/v1 --after-url http://b:8188/v1 --full")
    add_sides(run)
    run.add_argument("--profile", default="ci", choices=("dev", "ci", "nightly"), help="fuzzing profile (default: ci)")
    run.add_argument("--no-known", action="store_true", help="fail on findings recorded in fixtures/known_findings.json")
    run.add_argument("--parts", default=",".join(PARTS), metavar="P,P", help=f"parts to run (default: all of {','.join(PARTS)})")
    run.add_argument("--before-url", metavar="URL", help="IFEval 'before' server (OpenAI-compatible base URL, .../v1)")
    run.add_argument("--after-url", metavar="URL", help="IFEval 'after' server")
    run.add_argument("--model", help="model name to ask the URL servers for (default: the first each lists)")
    run.add_argument("--api-key-env", metavar="VAR", help="environment variable holding the servers' API key")
    run.add_argument("--full", action="store_true", help="IFEval on all prompts, not the fixed subset")
    run.add_argument("--max-tokens", type=int, metavar="N", help="IFEval answer length cap (embedded default: 64)")
    run.add_argument("--data", metavar="PATH", help="IFEval prompts (default: $DSA_IFEVAL_DATA, ../shared/ifeval, "
                     "else the shipped sample)")
    run.add_argument("--out", type=output_folder, metavar="DIR", help="where the IFEval runs are kept "
                     "(default: .dsa/run/<UTC time>)")
    run.add_argument("--allow-skips", action="store_true", help="exit 0 even if a part was skipped")
    run.add_argument("--json", type=output_file, metavar="FILE", help="also write the summary as JSON")
    add_pad_contract(run)
    add_impl_options(run)
    run.set_defaults(func=run_main_job)


def selected_parts(text: str) -> list[str]:
    names = [p.strip() for p in text.split(",") if p.strip()]
    for i, name in enumerate(names):
        if name not in PARTS:
            raise InputError(f"--parts[{i}]", f"unknown part {name!r} (one of {', '.join(PARTS)})")
    if not names:
        raise InputError("--parts", "names no part")
    return [p for p in PARTS if p in names]


RUNNERS: dict[str, Callable[[argparse.Namespace], Part]] = {
    "states": states_part, "fuzz": fuzz_part, "mutants": mutants_part, "e2e": e2e_part, "ifeval": ifeval_part_from_args}


def run_main_job(args: argparse.Namespace) -> int:
    parts = selected_parts(args.parts)
    if args.max_tokens is not None and args.max_tokens < 1:
        raise InputError("--max-tokens", f"must be >= 1, got {args.max_tokens}")
    if bool(args.before_url) != bool(args.after_url):
        raise InputError("--before-url/--after-url", "give both, or neither for the embedded servers")
    if "ifeval" in parts and args.data and not Path(args.data).is_file():  # before minutes of other parts, not after
        raise InputError("--data", f"{args.data} is not a file")
    for side in ("baseline", "candidate"):  # a bad spec, or a backend that cannot run here: before any part
        seam.resolve(getattr(args, side), backend=args.backend, field_name=side)
    if args.out is None:
        args.out = Path(".dsa/run") / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    outcomes: list[Part] = []
    for i, name in enumerate(parts, 1):
        print(f"== {i}/{len(parts)} {TITLES[name]}: {args.baseline} vs {args.candidate}", flush=True)
        started = time.monotonic()
        part = RUNNERS[name](args)
        part.seconds = part.seconds or time.monotonic() - started
        for line in part.lines:
            print(f"  {line}")
        print(f"  -> {part.status}: {part.headline}", flush=True)
        outcomes.append(part)
    print(summary(outcomes, args))
    if args.json:
        atomic_file.write_text(args.json, json.dumps({"verdict": verdict(outcomes, args.allow_skips)[0],
                                                      "parts": [p.to_dict() for p in outcomes]}, indent=1) + "\n")
    return verdict(outcomes, args.allow_skips)[1]


def verdict(outcomes: list[Part], allow_skips: bool) -> tuple[JobVerdict, int]:
    if any(p.status == PartStatus.FAILED for p in outcomes):
        return JobVerdict.FAILED, 1
    if any(p.status == PartStatus.SKIPPED for p in outcomes):
        return (JobVerdict.PASSED_WITH_SKIPS, 0) if allow_skips else (JobVerdict.INCOMPLETE, 1)
    return JobVerdict.PASSED, 0


def summary(outcomes: list[Part], args: argparse.Namespace) -> str:
    """The table a reviewer pastes into the PR."""
    rows = [f"\n## dsa-validation: {args.baseline} -> {args.candidate}", "",
            "| part | result | time | detail |", "|---|---|---:|---|"]
    for p in outcomes:
        known = f"; {known_phrase(p.known)}" if p.known else ""
        rows.append(f"| {TITLES[p.name]} | {p.status} | {p.seconds:.0f} s | {p.headline}{known} |")
    ifeval = next((p for p in outcomes if p.name == "ifeval" and p.status != PartStatus.SKIPPED), None)
    if ifeval:
        rows += ["", "IFEval (Before = baseline, After = candidate):", ""]
        rows += [line for line in ifeval.lines if line.startswith("|")]
    word, code = verdict(outcomes, args.allow_skips)
    known = known_phrase([label for p in outcomes for label in p.known])
    shown = f"{word} ({known})" if known else str(word)
    rows += ["", f"verdict: {shown} (exit {code}; {sum(p.seconds for p in outcomes):.0f} s in all)"]
    return "\n".join(rows)
