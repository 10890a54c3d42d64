"""The ``slots`` and ``check`` subcommands: inspect one state, or triage one state."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from validation import atomic_file, compare, seam
from validation.errors import InputError
from validation.options import add_backend, add_layers, add_pad_contract, add_sides, output_file
from validation.impls.paddle_paths import DEFAULT_NUM_LAYERS
from validation.state import BatchState, load_steps


def add_impl_options(parser: argparse.ArgumentParser) -> None:
    """Options every command that runs implementations per state shares."""
    add_backend(parser)
    add_layers(parser, DEFAULT_NUM_LAYERS)


def register(sub: argparse._SubParsersAction) -> None:
    slots = sub.add_parser(
        "slots", help="print one implementation's position ids and each consumer's slots for a state",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  dsa-validate slots --state fixtures/states/spec_prefill_bs4.json --impl legacy")
    slots.add_argument("--state", required=True, metavar="FILE.json",
                       help="a batch-state file, or a case file whose history steps run first (each step shown)")
    slots.add_argument("--impl", default="single_step",
                       help="registry name, module:NAME or path/file.py:NAME (default: single_step)")
    slots.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_impl_options(slots)
    slots.set_defaults(func=run_slots)

    check = sub.add_parser(
        "check", help="triage one state: candidate vs baseline, every element against the oracle",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="exit status: 0 no regression, 1 a REGRESSION (with --strict: any finding), 2 bad input\n"
        "example:\n  dsa-validate check --state fixtures/states/chunked_prefill.json --candidate chunked_fix")
    check.add_argument("--state", required=True, metavar="FILE.json",
                       help="a batch-state file, or a case file whose history steps are replayed first")
    add_sides(check)
    check.add_argument("--strict", action="store_true", help="exit 1 on any finding that is not OK")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.add_argument("--reduce", metavar="OUT.json", type=output_file,
                       help="when the state fails (a REGRESSION; with --strict, any finding), write the smallest "
                       "valid state that still fails the same way to OUT.json (properties/case_reducer.py)")
    add_impl_options(check)
    add_pad_contract(check)
    check.set_defaults(func=run_check)


def run_slots(args: argparse.Namespace) -> int:
    steps = load_steps(args.state)
    impl = seam.resolve(args.impl, backend=args.backend, num_layers=args.layers, field_name="impl")
    fn = impl.new()  # a case file's steps run through one instance: its persistent buffers carry over
    seen = [(state, seam.observe(fn, state.step_inputs(), args.layers)) for state in steps]
    if args.json:
        docs = [_observation_json(impl.name, state, obs) for state, obs in seen]
        print(json.dumps(docs[0] if len(docs) == 1 else {"steps": docs}))
    else:
        for i, (state, obs) in enumerate(seen):
            text = _observation_text(impl.name, state, obs)
            print(text if len(seen) == 1 else f"step {i + 1} of {len(seen)}: {text}")
    return 0 if all(obs.error is None for _, obs in seen) else 1


def run_check(args: argparse.Namespace) -> int:
    *history, state = load_steps(args.state)
    baseline = seam.resolve(args.baseline, backend=args.backend, num_layers=args.layers, field_name="baseline")
    candidate = seam.resolve(args.candidate, backend=args.backend, num_layers=args.layers, field_name="candidate")
    report = compare.compare_state(state, baseline, candidate, args.layers, history, pad_contract=args.pad_contract)
    if history:
        print(f"(replayed {len(history)} earlier steps through the same instances first)")
    print(json.dumps(report.to_dict()) if args.json else report.render())
    code = report.exit_code(args.strict)
    if args.reduce:
        _reduce(args, state, history, report, baseline, candidate)
    return code


def _reduce(args: argparse.Namespace, state: BatchState, history: list[BatchState], report: compare.Report,
            baseline: seam.Implementation, candidate: seam.Implementation) -> None:
    """``check --reduce``: cut a failing state down to what the failure needs, write it, say how to replay it."""
    from properties.case_reducer import reduce_steps  # noqa: PLC0415 - only this option needs the fuzzer's reducer
    from properties.config import FuzzConfig  # noqa: PLC0415 - its reproduce line, shared with fuzz

    failing = set(compare.VERDICTS) - {compare.OK} if args.strict else {compare.REGRESSION}

    def kinds(found: compare.Report) -> set[tuple[str, str]]:
        return {(f.verdict, f.consumer) for f in found.findings if f.verdict in failing}

    out = sys.stderr if args.json else sys.stdout  # stdout stays one JSON document under --json
    wanted = kinds(report)
    if not wanted:
        print(f"--reduce: nothing written: the state does not fail ({' or '.join(sorted(failing))})", file=out)
        return
    calls = [0]

    def fails(earlier: tuple[BatchState, ...], candidate_state: BatchState) -> bool:
        calls[0] += 1
        return bool(kinds(compare.compare_state(candidate_state, baseline, candidate, args.layers, list(earlier),
                                                pad_contract=args.pad_contract)) & wanted)

    steps, smaller = reduce_steps(tuple(history), state, fails)
    data = smaller.to_dict() if not steps else {"state": smaller.to_dict(), "history": [s.to_dict() for s in steps]}
    try:
        atomic_file.write_text(args.reduce, json.dumps(data, separators=(",", ":")) + "\n")
    except OSError as exc:
        raise InputError("reduce", f"cannot write {str(args.reduce)!r}: {exc.strerror or exc}") from None
    earlier = f" after {len(history)} earlier steps -> {len(steps)}" if history else ""
    print(f"--reduce: {_shape(state)} -> {_shape(smaller)}{earlier} ({calls[0]} checks); wrote {args.reduce}",
          file=out)
    sides = FuzzConfig(args.baseline, args.candidate, backend=args.backend, layers=args.layers, strict=args.strict,
                       pad_contract=args.pad_contract)
    print(f"reproduce: {sides.reproduce(args.reduce)}", file=out)


def _shape(state: BatchState) -> str:
    counts = ((state.bsz, "request"), (state.num_tokens, "token"), (state.max_blocks, "table column"))
    return ", ".join(f"{n} {word}{'' if n == 1 else 's'}" for n, word in counts)


def _observation_json(name: str, state: BatchState, obs: seam.Observation) -> dict[str, Any]:
    return {
        "impl": name,
        "num_tokens": state.num_tokens,
        "padded_num_tokens": state.padded_num_tokens,
        "error": obs.error,
        "hazards": obs.hazards,
        "position_ids": None if obs.position_ids is None else obs.position_ids.tolist(),
        "position_ids_dtype": None if obs.position_ids is None else str(obs.position_ids.dtype),
        "layers": [{c: {"dtype": str(a.dtype), "slots": a.tolist()} for c, a in layer.items()} for layer in obs.layers],
    }


def _observation_text(name: str, state: BatchState, obs: seam.Observation) -> str:
    head = f"{name}: {state.num_tokens} tokens, {state.padded_num_tokens} launched, block size {state.block_size}"
    if obs.error is not None:
        return f"{head}\n  error: {obs.error}"
    lines = [head, f"  position_ids ({obs.position_ids.dtype}): {obs.position_ids.tolist()}"]
    for consumer in seam.CONSUMERS:
        per_layer = [layer[consumer] for layer in obs.layers]
        if not per_layer:
            lines.append(f"  {consumer}: no layers returned")
        elif all(a.dtype == per_layer[0].dtype and a.tolist() == per_layer[0].tolist() for a in per_layer):
            lines.append(f"  {consumer} (all {len(per_layer)} layers, {per_layer[0].dtype}): {per_layer[0].tolist()}")
        else:
            lines.extend(f"  {consumer} layer {i} ({a.dtype}): {a.tolist()}" for i, a in enumerate(per_layer))
    lines.extend(f"  hazard: {h}" for h in obs.hazards)
    return "\n".join(lines)
