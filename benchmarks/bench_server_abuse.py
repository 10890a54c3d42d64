"""Issue 19's repros against a plain `dsa-validate serve` (no options), and the batch-dependence of its answers.

Each repeat starts a fresh server process, as a user runs it, and measures:
  * "What is the capital of France?" (chat, greedy): the answer, and whether it names Paris;
  * a normal chat request alone (8 tokens): its time, the "normal time" the others are read against;
  * the 10 MB body (`{"messages": [{"role": "user", "content": "abcd efgh " * 1_000_000}], "max_tokens": 8}`)
    sent while a normal request runs: the big one's status and time, the normal one's time, the server's RSS growth;
  * the long-prompt prefill: a completion of a prompt `--max-model-len` - 8 tokens long (the longest the default
    context takes with room to answer), max_tokens 1: the time to its one token, which is the prefill;
    the server's CPU seconds over it (all threads; the beside request's few included), and a normal request sent
    1 s into that prefill: its time (it shares the prefill's steps);
  * a normal request afterwards: its time, and the pool's free blocks (/health).
Then, once: 32 chat prompts sent at the same time vs the same 32 one at a time (greedy, `--max-tokens`): how many
answers are identical, and for each that differs, why: the engine in this process runs the prompt alone and in a
batch of 32 and records the logits of every step; up to the first differing token the inputs are the same, so the
largest |logit difference| there is the float summation order of another batch shape, and the top-2 margin where the
answers part says whether a difference that small can flip the greedy choice. Degenerate answers are counted
(a 4-gram repeated 4 or more times).

    python benchmarks/bench_server_abuse.py --repeats 3
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

import httpx

from bench_server import TOPICS, process_cpu_s

BIG_BODY = json.dumps({"messages": [{"role": "user", "content": "abcd efgh " * 1_000_000}], "max_tokens": 8})
NORMAL = {"messages": [{"role": "user", "content": "Name three colours."}], "max_tokens": 8}
PARIS = {"messages": [{"role": "user", "content": "What is the capital of France?"}], "max_tokens": 32}


def start_server() -> tuple[subprocess.Popen, str, list[str]]:
    proc = subprocess.Popen([sys.executable, "-m", "validation.cli", "serve", "--port", "0"], stderr=subprocess.PIPE,
                            text=True)
    banner = []
    while True:
        line = proc.stderr.readline()
        if not line:
            raise RuntimeError("the server exited before it listened:\n" + "".join(banner))
        banner.append(line)
        if "listening on http://" in line:
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return proc, line.split("listening on ", 1)[1].split()[0], banner


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def timed_post(url: str, **kwargs) -> tuple[httpx.Response, float]:
    start = time.perf_counter()
    response = httpx.post(url, timeout=1200, **kwargs)
    return response, time.perf_counter() - start


def one_repeat(max_model_len: int) -> dict:
    from evals.engine.tokenizer import load_tokenizer

    proc, url, banner = start_server()
    try:
        chat = f"{url}/chat/completions"
        paris = timed_post(chat, json=PARIS)[0].json()["choices"][0]["message"]["content"]
        alone = timed_post(chat, json=NORMAL)[1]
        rss_before = rss_mib(proc.pid)
        normal: dict = {}
        worker = threading.Thread(target=lambda: normal.update(zip(("response", "s"), timed_post(chat, json=NORMAL))))
        worker.start()
        time.sleep(0.05)  # the normal request is in flight when the big body arrives
        big, big_s = timed_post(chat, content=BIG_BODY, headers={"Content-Type": "application/json"})
        worker.join()
        rss_after = rss_mib(proc.pid)
        ids = load_tokenizer().encode(" ".join(f"w{i}" for i in range(max_model_len)))[:max_model_len - 8]
        during: dict = {}
        beside = threading.Thread(target=lambda: (time.sleep(1.0), during.update(
            zip(("response", "s"), timed_post(chat, json=NORMAL)))))
        cpu = process_cpu_s(proc.pid)
        beside.start()  # a normal request arriving while the long prompt is prefilled
        prefill, prefill_s = timed_post(f"{url}/completions", json={"prompt": ids, "max_tokens": 1})
        prefill_cpu_s = process_cpu_s(proc.pid) - cpu
        beside.join()
        after_s = timed_post(chat, json=NORMAL)[1]
        health = httpx.get(url.removesuffix("/v1") + "/health").json()
        return {"banner": [line.strip() for line in banner[:-1]], "paris_answer": paris, "paris": "Paris" in paris,
                "normal_alone_s": round(alone, 3), "big_status": big.status_code, "big_s": round(big_s, 3),
                "concurrent_normal_status": normal["response"].status_code, "concurrent_normal_s": round(normal["s"], 3),
                "rss_growth_mib": round(rss_after - rss_before, 1), "prefill_tokens": len(ids),
                "prefill_status": prefill.status_code, "prefill_s": round(prefill_s, 2),
                "prefill_server_cpu_s": round(prefill_cpu_s, 2),
                "normal_during_prefill_s": round(during["s"], 2),
                "normal_after_s": round(after_s, 3), "free_blocks_after": health["free_blocks"],
                "num_blocks": health["num_blocks"]}
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def degenerate(text: str) -> bool:
    words = text.split()
    grams = [tuple(words[i:i + 4]) for i in range(len(words) - 3)]
    return any(grams.count(g) >= 4 for g in set(grams))


async def ask_all(url: str, prompts: list[str], max_tokens: int, concurrent: bool) -> list[str]:
    async with httpx.AsyncClient(base_url=url, timeout=1200) as http:
        async def ask(p: str) -> str:
            body = {"messages": [{"role": "user", "content": p}], "max_tokens": max_tokens}
            return (await http.post("/chat/completions", json=body)).json()["choices"][0]["message"]["content"]

        if concurrent:
            return list(await asyncio.gather(*(ask(p) for p in prompts)))
        return [await ask(p) for p in prompts]


def engine_traces(prompt_ids: list[list[int]], max_tokens: int) -> tuple[list[list[int]], list[list]]:
    """Greedy answers and per-step logits rows of ``prompt_ids`` run together in one engine (serve's defaults)."""
    from evals.engine.engine import Engine, EngineConfig, SamplingParams
    from evals.engine.tokenizer import load_tokenizer

    engine = Engine(EngineConfig(slot_mapping="oracle", block_size=64, padding="none", max_num_seqs=32,
                                 max_model_len=2048))
    params = SamplingParams(max_tokens=max_tokens, stop_token_ids=load_tokenizer().stop_token_ids)
    index = {engine.add_request(ids, params): i for i, ids in enumerate(prompt_ids)}
    tokens: list[list[int]] = [[] for _ in prompt_ids]
    logits: list[list] = [[] for _ in prompt_ids]
    while engine.has_unfinished():
        outputs = engine.step()
        record = engine.last_record
        for out in outputs:
            i = index[out.request_id]
            tokens[i].extend(out.new_token_ids)
            logits[i].append(record.logits[record.batch.logits_requests.index(out.request_id)].copy())
    return tokens, logits


def explain(differing: list[int], prompts: list[str], max_tokens: int) -> list[dict]:
    """For each differing prompt: alone vs in the batch of 32, in this process's engine."""
    import numpy as np

    from evals.engine.tokenizer import load_tokenizer

    tok = load_tokenizer()
    ids = [tok.encode(tok.apply_chat_template([{"role": "user", "content": p}])) for p in prompts]
    batch_tokens, batch_logits = engine_traces(ids, max_tokens)
    found = []
    for i in differing:
        alone_tokens, alone_logits = engine_traces([ids[i]], max_tokens)
        a, b = alone_tokens[0], batch_tokens[i]
        split = next((k for k in range(min(len(a), len(b))) if a[k] != b[k]), min(len(a), len(b)))
        same_input = range(min(split + 1, len(alone_logits[0]), len(batch_logits[i])))
        drift = max(float(np.abs(alone_logits[0][k] - batch_logits[i][k]).max()) for k in same_input)
        row = np.sort(alone_logits[0][min(split, len(alone_logits[0]) - 1)])
        found.append({"prompt": i, "engine_alone_vs_batch_identical": a == b, "first_differing_token": split,
                      "max_abs_logit_diff_same_inputs": drift, "top2_margin_there": float(row[-1] - row[-2])})
    return found


def compare_batching(max_tokens: int) -> dict:
    prompts = [f"Write a paragraph about {t}." for t in TOPICS]
    proc, url, _ = start_server()
    try:
        together = asyncio.run(ask_all(url, prompts, max_tokens, concurrent=True))
        one_by_one = asyncio.run(ask_all(url, prompts, max_tokens, concurrent=False))
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    differing = [i for i, (a, b) in enumerate(zip(together, one_by_one)) if a != b]
    return {"prompts": len(prompts), "max_tokens": max_tokens, "identical": len(prompts) - len(differing),
            "differing": differing, "degenerate_concurrent": sum(map(degenerate, together)),
            "degenerate_one_at_a_time": sum(map(degenerate, one_by_one)),
            "pairs": [{"concurrent": together[i], "one_at_a_time": one_by_one[i]} for i in differing],
            "why": explain(differing, prompts, max_tokens)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-model-len", type=int, default=2048, help="serve's default context")
    parser.add_argument("--max-tokens", type=int, default=48, help="answer length in the batching comparison")
    parser.add_argument("--skip-batching", action="store_true")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    load_before = os.getloadavg()
    runs = []
    for i in range(args.repeats):
        runs.append(one_repeat(args.max_model_len))
        print(f"repeat {i + 1}: {json.dumps(runs[-1])}", flush=True)
    keys = ("normal_alone_s", "big_s", "concurrent_normal_s", "rss_growth_mib", "prefill_s", "prefill_server_cpu_s",
            "normal_during_prefill_s", "normal_after_s")
    medians = {k: statistics.median(r[k] for r in runs) for k in keys}
    print(f"medians of {len(runs)} fresh servers: {medians}")
    result = {"runs": runs, "medians": medians}
    if not args.skip_batching:
        result["batching"] = compare_batching(args.max_tokens)
        b = result["batching"]
        print(f"32 concurrent vs one at a time: {b['identical']}/{b['prompts']} identical; degenerate "
              f"{b['degenerate_concurrent']} / {b['degenerate_one_at_a_time']}; why: {json.dumps(b['why'])}")
    result["load_average"] = {"before": [round(x, 2) for x in load_before],
                              "after": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count()}
    print(f"load average {result['load_average']}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
