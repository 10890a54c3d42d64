"""Throughput of `dsa-validate serve` under 32 concurrent clients against the engine's own batched figure.

The same workload both ways: 32 chat prompts (token ids from the tokenizer's ChatML template), greedy, a fixed
``max_tokens``, the tokenizer's stop ids. "engine" adds the 32 requests to an in-process Engine and steps it to the
end; "server" starts the real command (`python -m validation.cli serve`, its own process, as a user runs it) and
sends the same token-id prompts from 32 concurrent `openai.AsyncOpenAI` calls. Tokens/s = completion tokens / wall
time from the first request to the last answer; median of ``--repeats``, engine and server runs alternated after one
warm-up pair. Tokens per CPU-second (the process's user + system time, all threads: the engine's own process, the
server's process; the clients' is not counted) is printed beside it: on a shared machine it shows the server's
overhead where wall time mostly shows the neighbours. Goal (issue 8):
the server keeps at least 90% of the engine's figure.

    python benchmarks/bench_server.py --max-tokens 32 --repeats 3 --padding none
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time

TOPICS = ("rivers", "bridges", "owls", "volcanoes", "chess", "tea", "comets", "glaciers", "violins", "maps",
          "bees", "lighthouses", "deserts", "clocks", "whales", "kites", "forests", "trains", "coral", "paper",
          "salt", "mountains", "bicycles", "thunder", "gardens", "bread", "satellites", "ink", "wolves", "silk",
          "harbours", "mushrooms")


def prompts() -> list[list[int]]:
    from evals.engine.tokenizer import load_tokenizer

    tok = load_tokenizer()
    return [tok.encode(tok.apply_chat_template([{"role": "user", "content": f"Write a paragraph about {t}."}],
                                               add_generation_prompt=True)) for t in TOPICS]


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far, all its threads (Linux /proc)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def engine_run(engine, workload: list[list[int]], max_tokens: int, stop_ids: list[int]) -> tuple:
    from evals.engine.engine import SamplingParams

    params = SamplingParams(max_tokens=max_tokens, stop_token_ids=stop_ids)
    start, cpu = time.perf_counter(), process_cpu_s(os.getpid())
    ids_of = {engine.add_request(ids, params): i for i, ids in enumerate(workload)}
    answers: list[list[int]] = [[] for _ in workload]
    while engine.has_unfinished():
        for out in engine.step():
            answers[ids_of[out.request_id]].extend(out.new_token_ids)
    elapsed, cpu = time.perf_counter() - start, process_cpu_s(os.getpid()) - cpu
    return sum(map(len, answers)), elapsed, cpu, answers


def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    """`dsa-validate serve` on a free loopback port, as its own process; returns it and its base URL."""
    proc = subprocess.Popen([sys.executable, "-m", "validation.cli", "serve", "--port", "0",
                             "--slot-mapping", args.slot_mapping, "--block-size", str(args.block_size),
                             "--padding", args.padding, "--max-num-seqs", "32"],
                            stderr=subprocess.PIPE, text=True, env={**os.environ})
    while True:
        line = proc.stderr.readline()
        if not line:
            raise RuntimeError("the server exited before it listened")
        if "listening on http://" in line:
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep its pipe from filling up
            return proc, line.split("listening on ", 1)[1].split()[0]


async def server_run(base_url: str, model: str, workload: list[list[int]], max_tokens: int,
                     server_pid: int) -> tuple:
    import openai

    async with openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=600) as client:
        start, cpu = time.perf_counter(), process_cpu_s(server_pid)
        replies = await asyncio.gather(*[client.completions.create(model=model, prompt=ids, max_tokens=max_tokens)
                                         for ids in workload])
        elapsed, cpu = time.perf_counter() - start, process_cpu_s(server_pid) - cpu
    return sum(r.usage.completion_tokens for r in replies), elapsed, cpu, [r.choices[0].text for r in replies]


def measure(args: argparse.Namespace, workload: list[list[int]]) -> tuple[list, list]:
    """Engine and server runs alternated (one warm-up each first), so a busy machine weighs on both alike."""
    import httpx

    from evals.engine.engine import Engine, EngineConfig
    from evals.engine.tokenizer import load_tokenizer

    engine = Engine(EngineConfig(slot_mapping=args.slot_mapping, block_size=args.block_size, padding=args.padding,
                                 max_num_seqs=32))
    stop_ids = list(load_tokenizer().stop_token_ids)
    proc, base_url = start_server(args)
    try:
        model = httpx.get(base_url + "/models").json()["data"][0]["id"]
        engine_runs, server_runs = [], []
        for i in range(args.repeats + 1):
            e = engine_run(engine, workload, args.max_tokens, stop_ids)
            s = asyncio.run(server_run(base_url, model, workload, args.max_tokens, proc.pid))
            if i:  # the first pair warms up
                engine_runs.append(e)
                server_runs.append(s)
                print(f"run {i}: engine {e[0] / e[1]:.1f} tokens/s ({e[0] / e[2]:.1f} per CPU-s), "
                      f"server {s[0] / s[1]:.1f} tokens/s ({s[0] / s[2]:.1f} per CPU-s)", flush=True)
        return engine_runs, server_runs
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def summarize(runs: list[tuple]) -> dict:
    rates = [run[0] / run[1] for run in runs]
    per_cpu = [run[0] / run[2] for run in runs]
    return {"tokens_per_s_median": round(statistics.median(rates), 2), "tokens_per_s": [round(r, 2) for r in rates],
            "tokens_per_cpu_s_median": round(statistics.median(per_cpu), 2),
            "tokens_per_cpu_s": [round(r, 2) for r in per_cpu], "tokens": [run[0] for run in runs],
            "seconds": [round(run[1], 3) for run in runs], "cpu_seconds": [round(run[2], 3) for run in runs]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--slot-mapping", default="single_step")
    parser.add_argument("--block-size", type=int, default=64)
    parser.add_argument("--padding", default="none",
                        help="default none: single_step with capture padding is the known stale-tail regression, "
                             "whose answers depend on earlier steps")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    workload = prompts()
    load_before = os.getloadavg()
    engine_runs, server_runs = measure(args, workload)
    load = {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()],
            "cpus": os.cpu_count()}
    engine, server = summarize(engine_runs), summarize(server_runs)
    from evals.engine.tokenizer import load_tokenizer

    decode = load_tokenizer().decode
    engine_texts = [decode(ids) for ids in engine_runs[-1][3]]
    same = [sum(a == b for a, b in zip(engine_texts, run[3])) for run in server_runs]
    server["answers_identical_to_engine_alone"] = same
    print(f"engine alone: {engine['tokens_per_s_median']} tokens/s {engine}")
    print(f"server, 32 concurrent clients: {server['tokens_per_s_median']} tokens/s {server}", flush=True)
    ratio = server["tokens_per_s_median"] / engine["tokens_per_s_median"]
    cpu_ratio = server["tokens_per_cpu_s_median"] / engine["tokens_per_cpu_s_median"]
    print(f"answers identical to the engine-alone run's, per server run: {same} of {len(workload)} "
          "(greedy answers depend on which requests share a step)")
    print(f"server / engine: {ratio:.1%} of tokens/s (goal: >= 90%), {cpu_ratio:.1%} of tokens per CPU-second; "
          f"load average {load}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"settings": vars(args), "prompts": len(workload), "engine": engine, "server": server,
                       "ratio": round(ratio, 4), "cpu_ratio": round(cpu_ratio, 4), "load_average": load}, f, indent=2)


if __name__ == "__main__":
    main()
