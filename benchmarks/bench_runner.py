"""Benchmark of the IFEval runner's own cost: CPU per request and how busy it keeps its slots.

Why: a nightly run asks 541 prompts of servers that take seconds each; the runner must add at most
2 ms of its own time per request and keep at least 95 % of ``--concurrency`` requests in flight, so
that the servers, not the runner, set the pace. Measured against the fixture server
(``tests/ifeval_server.py``) in its own process, answering every request after a fixed latency.

    .venv/bin/python benchmarks/bench_runner.py --data ../shared/ifeval/input_data.jsonl \
        --latency 0.25 --concurrency 32 --repeats 3

Per repeat, a fresh run folder; reported: the runner's CPU time (user + system of this process while
asking, scoring excluded) per request; the time-average of requests in flight over the asking phase
divided by ``--concurrency`` (busy fraction); and the achieved request rate against the ideal
``concurrency / latency``. Medians over repeats.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from evals.ifeval import data, client as runner  # noqa: E402


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def one_run(url: str, prompts: list[data.Prompt], concurrency: int, folder: Path) -> dict[str, float]:
    settings = runner.Settings(base_urls=[url], model="bench", out=str(folder), concurrency=concurrency,
                               progress=False, timeout_s=60.0)
    key = runner.api_key(settings)
    from evals.ifeval.store import Store
    import asyncio

    store = Store(folder)
    store.open()
    cpu, wall = _cpu(), time.perf_counter()
    outcome = asyncio.run(runner._ask_all(settings, key, prompts, store))
    cpu, wall = _cpu() - cpu, time.perf_counter() - wall
    store.close()
    assert outcome.answered == len(prompts), outcome
    return {"cpu_ms_per_request": 1000 * cpu / len(prompts),
            "busy_fraction": outcome.busy_seconds / outcome.wall_seconds / concurrency,
            "rate": len(prompts) / wall}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "ifeval" / "input_data.jsonl"))
    parser.add_argument("--latency", type=float, default=0.25, help="server latency per request, seconds")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=1082, help="requests per run (prompts cycled; default 2x541)")
    args = parser.parse_args(argv)

    base = data.load_prompts(args.data)
    prompts = [data.Prompt(i, p.prompt, p.instruction_ids, p.kwargs, p.checkers)
               for i, p in zip(range(args.prompts), base * (args.prompts // len(base) + 1))]
    server = subprocess.Popen([sys.executable, str(REPO / "tests" / "ifeval_server.py"), "--latency",
                               str(args.latency)], stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())  # type: ignore[union-attr]
        url = f"http://127.0.0.1:{port}/v1"
        one_run(url, prompts[:64], args.concurrency, Path(tempfile.mkdtemp()))  # warm-up: imports, connections
        runs = []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as tmp:
                runs.append(one_run(url, prompts, args.concurrency, Path(tmp)))
    finally:
        server.terminate()
        server.wait()
    ideal = args.concurrency / args.latency
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(f"{len(prompts)} requests, concurrency {args.concurrency}, server latency {args.latency * 1000:.0f} ms, "
          f"{args.repeats} repeats, load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print("runner CPU per request: " + " / ".join(f"{r['cpu_ms_per_request']:.2f}" for r in runs)
          + f" ms (median {med['cpu_ms_per_request']:.2f} ms; goal <= 2 ms)")
    print("busy fraction (mean in flight / concurrency): " + " / ".join(f"{r['busy_fraction']:.3f}" for r in runs)
          + f" (median {med['busy_fraction']:.3f}; goal >= 0.95)")
    print(f"request rate: median {med['rate']:.1f}/s of an ideal {ideal:.1f}/s ({med['rate'] / ideal:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
