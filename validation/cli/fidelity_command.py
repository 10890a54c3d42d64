"""``dsa-validate fidelity``: each FastDeploy checkout's own code against the suite's model of it, bit for bit.

Without checkouts named it takes every snapshot folder of ``../shared/fastdeploy``. Each runs over the committed
corpus and over states drawn by the property suite's strategy (the ``ci`` profile's equivalence budget), fresh and
in order; one table says how many were identical and, for the first difference, a ``check`` line. Where
CuPy and a GPU are present, the kernel half follows: each checkout's own kernels, compiled, against the suite's
CUDA models (elsewhere it is printed as skipped, with the reason). ``--op-level``
instead runs FastDeploy's own op tests (``tests/operators/test_get_position_ids*.py``) against each checkout's ops.
Exit 0 all identical (all op tests pass), 1 a difference (a failing op test), 2 bad input.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import fixtures
from validation.cross_backend import read_corpus
from validation.errors import InputError, MissingDependency
from validation.fastdeploy import fidelity, op_test_files, op_tests
from validation.fastdeploy.checkout import RUNNER, open_checkout
from validation.options import output_folder, positive_int
from validation.state import BatchState

DEFAULT_SNAPSHOTS = Path("../shared/fastdeploy")
DEFAULT_CORPUS = fixtures.ROOT / "corpus" / "states.jsonl.gz"


def register(sub: argparse._SubParsersAction) -> None:
    from properties import profiles  # noqa: PLC0415 - the face may use the property suite

    parser = sub.add_parser(
        "fidelity", help="run FastDeploy checkouts' own code against the suite's models, bit for bit",
        formatter_class=argparse.RawDescriptionHelpFormatter, description=__doc__.split("\n\n", 1)[1],
        epilog="examples:\n  dsa-validate fidelity\n  dsa-validate fidelity ~/FastDeploy --fuzz 0\n"
        "  dsa-validate fidelity --op-level")
    parser.add_argument("checkouts", nargs="*", type=Path, metavar="CHECKOUT",
                        help=f"checkout roots or snapshot folders (default: every snapshot in {DEFAULT_SNAPSHOTS})")
    parser.add_argument("--snapshots", type=Path, default=DEFAULT_SNAPSHOTS, metavar="DIR",
                        help=f"folder of snapshot checkouts (default: {DEFAULT_SNAPSHOTS})")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, metavar="FILE.jsonl.gz",
                        help="committed state corpus (default: fixtures/corpus/states.jsonl.gz)")
    parser.add_argument("--limit", type=positive_int, metavar="N", help="first N corpus states only")
    parser.add_argument("--fuzz", type=int, default=profiles.BUDGETS["ci"]["equivalence"], metavar="N",
                        help="states drawn by the property strategy (default: the ci profile's equivalence budget, "
                        f"{profiles.BUDGETS['ci']['equivalence']}; 0: none)")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed for the drawn states (default: 0)")
    parser.add_argument("--out", type=output_folder, default=Path("fidelity-diffs"), metavar="DIR",
                        help="where a first difference is written as a case file (default: fidelity-diffs)")
    parser.add_argument("--op-level", action="store_true",
                        help="run FastDeploy's own op tests against each checkout's ops instead (op-level inputs)")
    parser.set_defaults(func=run_fidelity_command)


def checkouts(args: argparse.Namespace) -> list[Path]:
    """The checkouts named, or every snapshot folder (exit 2 when there are none)."""
    if args.checkouts:
        return list(args.checkouts)
    if not args.snapshots.is_dir():
        raise InputError("--snapshots", f"{args.snapshots}: no such folder (name checkouts, or point --snapshots at "
                         "a folder of FastDeploy checkouts)")
    found = sorted(p for p in args.snapshots.iterdir() if (p / RUNNER).is_file())
    if not found:
        raise InputError("--snapshots", f"{args.snapshots}: no FastDeploy checkout in it (looked for */{RUNNER})")
    return found


def drawn_states(count: int, seed: int) -> list[BatchState]:
    """``count`` states from the property strategy, half at block size 64, half over the sweep sizes."""
    from properties.corpus import draw_states  # noqa: PLC0415 - hypothesis only when drawing

    return [BatchState.from_dict(data) for data in draw_states(count, seed=seed)]


def run_fidelity_command(args: argparse.Namespace) -> int:
    roots = checkouts(args)
    for root in roots:
        open_checkout(str(root))  # every checkout is readable before anything runs: bad input is exit 2 now
    if args.op_level:
        return _op_level(roots)
    if not args.corpus.is_file():
        raise InputError("--corpus", f"{args.corpus}: no such file")
    corpus = list(read_corpus(args.corpus))[: args.limit]
    fuzzed = drawn_states(args.fuzz, args.seed) if args.fuzz > 0 else []
    rows = []
    for root in roots:
        rows.append(fidelity.run_fidelity(root, corpus, "corpus", args.out))
        if fuzzed:
            rows.append(fidelity.run_fidelity(root, fuzzed, f"fuzz-seed{args.seed}", args.out))
        print(f"{rows[-1].commit}: done", flush=True)
    print(fidelity.render(rows))
    differ = [r for r in rows if r.identical != r.states]
    print(f"{len(rows) - len(differ)} of {len(rows)} runs identical on every state (Python half: the checkouts' own lines "
          "on Paddle; ops as each row's backend names)")
    return 1 if differ or not _kernel_half(roots, args) else 0


def _kernel_half(roots: list[Path], args: argparse.Namespace) -> bool:
    """Each checkout's compiled kernels against the suite's CUDA models; printed as skipped, with the reason,
    where CuPy or a GPU is missing. True unless a row differs."""
    from validation.fastdeploy import compiled_ops, kernel_fidelity  # noqa: PLC0415 - numpy/CuPy only here

    try:
        compiled_ops.cupy()
    except MissingDependency as exc:
        print(f"kernel half: skipped ({exc})")
        return True
    rows = kernel_fidelity.fidelity_rows(roots, args.corpus, max(args.fuzz, 0), args.seed, args.limit)
    print(kernel_fidelity.render(rows))
    same = sum(r.identical == r.states for r in rows)
    print(f"{same} of {len(rows)} kernel rows identical on every input (each checkout's own kernels, compiled here)")
    return same == len(rows)


def _op_level(roots: list[Path]) -> int:
    failed = 0
    for root in roots:
        run = op_tests.run_op_tests(open_checkout(str(root)))
        if not run.results:
            print(f"op-level {run.commit} {root}: skipped: no {op_test_files.OP_TESTS_GLOB} in it")
            continue
        passed = sum(r.outcome == "passed" for r in run.results)
        print(f"op-level {run.commit} {root}: {passed}/{len(run.results)} of FastDeploy's own op tests pass")
        for origin in run.origins:
            print(f"  {origin}")
        for result in run.results:
            if result.outcome != "passed":
                print(f"  {result.outcome.upper()} {result.file}::{result.test}: {result.detail}")
        failed += not run.passed
    print("(op-level: FastDeploy's own test inputs, which need not be server states; not part of any verdict)")
    return 1 if failed else 0
