"""Speed and memory of the engine's model (SmolLM2-135M, paged DSA-style Paddle forward) on this machine's CPU.

The targets (issue 11): at least 120 tokens/s batched decode at batch 32 on the 2-core machine, peak RSS under
2 GB. Each repeat is a fresh process (imports Paddle, reads and dequantizes the GGUF) that measures, in order:

* prefill: the batch-32 requests' prompts (``--prompt`` tokens each) launched ``--prefill-launch`` tokens at a time
  (whole prompts packed), tokens/s over all launches;
* decode at batch 1, 16 and 32: ``--steps`` greedy steps after the prompts, one token per request per step, logits
  for every request each step (as the engine asks), tokens/s;
* decode at batch 32 with a small ``--sparse-top-k`` (the lightning indexer selecting);
* peak RSS of the process (``ru_maxrss``), and the weight-loading time.

Each rate is given per wall second (``*_tok_s``) and per CPU second of the process, all its threads together
(``*_tok_per_cpu_s``). The second does not depend on what else the machine runs; on an otherwise idle machine the
wall rate is at least the CPU rate (the process keeps at least one core busy), so it is a floor for the target.

Block size 64, block tables of shuffled blocks, true slots (``block * 64 + offset``). The figures printed are the
medians over repeats.

    python benchmarks/bench_engine_model.py                 # 3 fresh processes
    python benchmarks/bench_engine_model.py --repeats 5 --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

BLOCK = 64


def _worker(args) -> dict:
    import resource

    import numpy as np

    start = time.perf_counter()
    from evals.engine.model import DSAModel
    from evals.engine.weights import load_model_weights

    weights = load_model_weights()
    load_s = time.perf_counter() - start
    layers = weights.config.num_layers
    rng = np.random.default_rng(0)
    result: dict = {"load_s": load_s}

    def session(batch: int, top_k: int, measure_prefill: bool) -> tuple[float, float | None]:
        model = DSAModel(weights, top_k=top_k)
        per_req = -(-(args.prompt + args.steps) // BLOCK)
        caches = model.new_caches(batch * per_req, BLOCK)
        tables = rng.permutation(batch * per_req).astype(np.int32).reshape(batch, per_req)
        prompts = rng.integers(100, 40000, size=(batch, args.prompt))

        def slots(req, pos):
            return tables[req, pos // BLOCK].astype(np.int64) * BLOCK + pos % BLOCK

        def launch(req, pos, ids, last_rows):
            s = slots(req, pos)
            return model.forward(caches, ids, pos, [(s, s)] * layers, req.astype(np.int32),
                                 (pos + 1).astype(np.int32), tables, BLOCK, last_rows)

        per_launch = max(1, args.prefill_launch // args.prompt)
        next_ids = np.zeros(batch, np.int64)
        t0, c0 = time.perf_counter(), time.process_time()
        for first in range(0, batch, per_launch):
            reqs = np.arange(first, min(batch, first + per_launch))
            req = np.repeat(reqs, args.prompt)
            pos = np.tile(np.arange(args.prompt), len(reqs))
            last = np.flatnonzero(pos == args.prompt - 1)
            next_ids[reqs] = launch(req, pos, prompts[reqs].reshape(-1), last).argmax(-1)
        tokens = batch * args.prompt
        prefill = (tokens / (time.perf_counter() - t0), tokens / (time.process_time() - c0))

        req = np.arange(batch)
        t0, c0 = time.perf_counter(), time.process_time()
        for step in range(args.steps):
            pos = np.full(batch, args.prompt + step, np.int64)
            next_ids = launch(req, pos, next_ids, req).argmax(-1)
        tokens = batch * args.steps
        decode = (tokens / (time.perf_counter() - t0), tokens / (time.process_time() - c0))
        return decode, (prefill if measure_prefill else None)

    def record(name, rates):
        result[f"{name}_tok_s"], result[f"{name}_tok_per_cpu_s"] = rates

    for batch in (1, 16, 32):
        decode, prefill = session(batch, args.dense_top_k, measure_prefill=batch == 32)
        record(f"decode_b{batch}", decode)
        if prefill is not None:
            record("prefill", prefill)
    record("decode_b32_sparse", session(32, args.sparse_top_k, measure_prefill=False)[0])
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--prompt", type=int, default=128, help="prompt tokens per request")
    parser.add_argument("--steps", type=int, default=16, help="decode steps timed")
    parser.add_argument("--prefill-launch", type=int, default=512, help="tokens per prefill launch")
    parser.add_argument("--dense-top-k", type=int, default=2048)
    parser.add_argument("--sparse-top-k", type=int, default=32)
    parser.add_argument("--json", help="write the runs and medians here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(args)))
        return 0

    forwarded = [f"--prompt={args.prompt}", f"--steps={args.steps}", f"--prefill-launch={args.prefill_launch}",
                 f"--dense-top-k={args.dense_top_k}", f"--sparse-top-k={args.sparse_top_k}"]
    runs = []
    for i in range(args.repeats):
        out = subprocess.run([sys.executable, __file__, "--worker", *forwarded],
                             capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"run {i + 1}: " + ", ".join(f"{k} {v:.1f}" for k, v in runs[-1].items()), file=sys.stderr)
    medians = {k: round(statistics.median(r[k] for r in runs), 1) for k in runs[0]}
    print(f"{'metric':<26} median over {args.repeats} fresh processes")
    for k, v in medians.items():
        print(f"{k:<26} {v}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "runs": runs, "median": medians}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
