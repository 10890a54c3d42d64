"""The ``bench`` subcommand: time every registered path on every shape and layer count, print the
table, and write the JSON and the plot."""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path
from typing import Any

from validation import seam
from validation.bench import timing_report, traffic
from validation.bench.shapes import DEFAULT_SHAPES, Shape, parse_shapes
from validation.options import MAX_LAYERS, add_backend, output_file, positive_int
from validation.errors import InputError
from validation.fastdeploy.kernel_source import find_op_files

# Known paths first, in the order of their history; any other registered path (e.g. a proposed fix)
# follows, so a path added to ``seam.BUILTINS`` is timed without touching this module.
HISTORY = ("legacy", "single_step", "chunked_fix", "get_position_ids", "fused")
DEFAULT_LAYERS = "1,5,16,61"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench", help="time one step of every path per batch shape and layer count (CUDA events, CUDA graphs)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  dsa-validate bench --graph --json gpu_bench.json --plot gpu_bench.png\n"
        "  dsa-validate bench --backend paddle --layers 1,61 --repeats 100\n"
        "  dsa-validate bench --from-json benchmarks/results/gpu_bench.json --plot gpu_bench.png\n"
        "exit status: 0 every path timed, 1 a path failed or its timed work computed something else, 2 bad input")
    add_backend(p, default="cuda",
                help_text="cuda: kernels via CuPy, device-timed; paddle: Paddle models, host-timed (default: cuda)")
    p.add_argument("--layers", default=DEFAULT_LAYERS, metavar="N,N,...",
                   help=f"layer counts to time every path at (default: {DEFAULT_LAYERS}; DeepSeek-V3.2 has 61)")
    p.add_argument("--shapes", default=DEFAULT_SHAPES, metavar="SPEC,...",
                   help=f"decode:BSZxTOKENS or prefill:BSZxLENGTH, comma-separated (default: {DEFAULT_SHAPES})")
    p.add_argument("--paths", default=None, metavar="NAME,...",
                   help="registered paths to time (default: every path of the backend)")
    p.add_argument("--graph", action="store_true",
                   help="also time each step replayed from a captured CUDA graph, alone and 20 to a graph")
    p.add_argument("--repeats", type=positive_int, default=200, metavar="N", help="samples per figure (default: 200)")
    p.add_argument("--warmup", type=positive_int, default=20, metavar="N", help="unrecorded runs first (default: 20)")
    p.add_argument("--json", type=output_file, metavar="OUT.json", help="write every sample's statistics as JSON")
    p.add_argument("--plot", type=output_file, metavar="OUT.png", help="plot cost against layers (needs matplotlib)")
    p.add_argument("--fastdeploy", type=Path, nargs="+", default=[], metavar="CHECKOUT",
                   help="also time each FastDeploy checkout's own compiled ops (position ops, fused op, padding "
                   "op) on every shape, graph-replayed (cuda backend only)")
    p.add_argument("--from-json", type=Path, metavar="IN.json",
                   help="measure nothing: print (and plot) a result written earlier by --json")
    p.set_defaults(func=run_bench)


def run_bench(args: argparse.Namespace) -> int:
    doc = timing_report.read_json(args.from_json) if args.from_json else measure(args)
    print(timing_report.render(doc))
    if doc.get("fastdeploy_kernels"):
        from validation.bench.fastdeploy_kernels import render  # noqa: PLC0415 - only with --fastdeploy

        print(render(doc["fastdeploy_kernels"]))
    if args.json:
        timing_report.write_json(doc, args.json)
        print(f"wrote {args.json}")
    if args.plot:
        timing_report.plot(doc, args.plot)
        print(f"wrote {args.plot}")
    return 1 if any(row.get("error") for row in doc["results"] + doc.get("fastdeploy_kernels", [])) else 0


def parse_layers(text: str) -> list[int]:
    values = []
    for index, item in enumerate(text.split(",")):
        try:
            value = int(item)
        except ValueError:
            raise InputError("layers", f"{item.strip()!r} is not an integer", index) from None
        if not 1 <= value <= MAX_LAYERS:
            raise InputError("layers", f"must be between 1 and {MAX_LAYERS}, got {value}", index)
        values.append(value)
    return sorted(set(values))


def registered_paths(backend: str, wanted: str | None) -> list[str]:
    table = seam.BUILTINS[backend]
    every = [p for p in HISTORY if p in table] + sorted(set(table) - set(HISTORY))
    if wanted is None:
        return every
    chosen = [p.strip() for p in wanted.split(",")]
    for index, name in enumerate(chosen):
        if name not in table:
            raise InputError("paths", f"{name!r} is not a {backend} path (choose from: {', '.join(every)})", index)
    return [p for p in every if p in chosen]


def _command(args: argparse.Namespace, layers: list[int], shapes: list[Shape], paths: list[str]) -> str:
    parts = ["dsa-validate bench", f"--backend {args.backend}", f"--layers {','.join(map(str, layers))}",
             f"--shapes {','.join(f'{s.kind}:{s.bsz}x{s.tokens}' for s in shapes)}"]
    if args.paths:
        parts.append(f"--paths {','.join(paths)}")
    if args.graph:
        parts.append("--graph")
    if args.fastdeploy:
        parts.append("--fastdeploy " + " ".join(p.as_posix() for p in args.fastdeploy))
    return " ".join(parts + [f"--repeats {args.repeats}", f"--warmup {args.warmup}"])


def measure(args: argparse.Namespace) -> dict[str, Any]:
    shapes, layers = parse_shapes(args.shapes), parse_layers(args.layers)
    paths = registered_paths(args.backend, args.paths)
    for root in args.fastdeploy:  # a path that is not a checkout is refused before anything is timed
        find_op_files(root)
    cuda = args.backend == "cuda"
    if cuda:
        from validation.bench.cuda_timer import CudaTimer, environment  # noqa: PLC0415 - needs CuPy

        timer: Any = CudaTimer(args.repeats, args.warmup)
        timer_name = "CUDA events (device time)"
    else:
        from validation.bench import host_timer  # noqa: PLC0415
        from validation.bench.host_timer import environment  # noqa: PLC0415

        timer_name = "host wall-clock (time.perf_counter) around each seam call, Paddle on the CPU"
    graph = cuda and args.graph
    doc: dict[str, Any] = {
        "schema": timing_report.SCHEMA, "backend": args.backend, "timer": timer_name, "environment": environment(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": _command(args, layers, shapes, paths), "repeats": args.repeats, "warmup": args.warmup,
        "layers": layers, "shapes": [s.to_dict() for s in shapes], "paths": paths,
        "modes": ["eager", "graph", "in_graph"] if graph else ["eager"], "skipped": [], "floor": {},
        "bandwidth": {"bytes_per_s": traffic.H200_BANDWIDTH, "source": traffic.BANDWIDTH_SOURCE} if cuda else None,
        "results": [],
    }
    if args.graph and not cuda:
        doc["skipped"].append(host_timer.GRAPH_SKIPPED)
        print(host_timer.GRAPH_SKIPPED, file=sys.stderr)
    if cuda:
        doc["floor"] = {mode: timing_report.stats(samples) for mode, samples in timer.floor().items() if mode in doc["modes"]}
    for shape in shapes:
        print(f"bench: {shape.name}, {len(paths)} paths x L in {layers}", file=sys.stderr)
        inputs = shape.state().step_inputs()
        for n in layers:
            for name in paths:
                doc["results"] += _time_one(timer if cuda else None, args, name, shape, n, inputs, doc["modes"])
    if args.fastdeploy and cuda:
        from validation.bench.fastdeploy_kernels import time_checkout_ops  # noqa: PLC0415 - needs CuPy

        print(f"bench: FastDeploy's compiled ops of {len(args.fastdeploy)} checkout(s)", file=sys.stderr)
        doc["fastdeploy_kernels"] = time_checkout_ops(timer, args.fastdeploy, shapes)
    elif args.fastdeploy:
        doc["skipped"].append("--fastdeploy: FastDeploy's kernels are timed on the cuda backend only")
    timing_report.derive(doc)
    return doc


def _time_one(timer: Any, args: argparse.Namespace, name: str, shape: Shape, layers: int,
              inputs: dict[str, Any], modes: list[str]) -> list[dict[str, Any]]:
    impl = seam.resolve(name, backend=args.backend, num_layers=layers, field_name="paths")
    nbytes = traffic.step_bytes(impl.target, shape, layers) if timer is not None else None
    base = {"shape": shape.name, "path": name, "layers": layers, "bytes": nbytes,
            "bandwidth_floor_us": traffic.floor_us(nbytes) if nbytes is not None else None}
    fn = impl.new()
    try:
        if timer is None:
            from validation.bench.host_timer import time_path  # noqa: PLC0415

            samples = time_path(fn, inputs, args.repeats, args.warmup)
        elif not hasattr(fn, "launch"):
            raise TypeError("it has no launch() entry, so its device work cannot be timed alone")
        else:
            samples = timer.path(fn, inputs, "graph" in modes)
    except Exception as exc:  # noqa: BLE001 - a path failing on a shape is reported in its row, not a crash
        return [base | {"mode": mode, "stats": None, "error": f"{type(exc).__name__}: {exc}"} for mode in modes]
    return [base | {"mode": mode, "stats": timing_report.stats(samples[mode]), "error": None} for mode in modes]
