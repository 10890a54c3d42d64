"""Benchmark of the IFEval scorer: 541 prompts, strict and loose, median of repeated runs.

Why: the reference implementation scores 541 responses in 3.3-4.0 s on the project's machine; this
scorer must be much faster with identical verdicts. Two response sets are timed:
``echo`` (each prompt echoed, short) and ``synthetic`` (long, varied, model-like responses built
deterministically from the prompts: markdown, bullets, dividers, upper/lower case, other languages),
closer to real model output in length. Each run is a child forked before anything was scored, so
every cache starts empty (cold); the one-off initialisation (langdetect profiles, Punkt) is timed
separately. What a user waits for, the whole process, is ``bench_ifeval_process.py``.

    .venv/bin/python benchmarks/bench_ifeval.py --data ../shared/ifeval/input_data.jsonl --repeats 7

``--fork 0`` keeps everything in one process; ``--fork 1`` detects languages in a forked child while
the parent checks the rest (the scorer's default, ``auto``, forks only when the one-minute load
average leaves a CPU idle). Verdicts are the same in every mode.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

from evals.ifeval import data, language, scoring, text

FOREIGN = (
    "Der schnelle braune Fuchs springt über den faulen Hund und läuft dann weiter in den Wald.",
    "El rápido zorro marrón salta sobre el perro perezoso y luego sigue corriendo hacia el bosque.",
    "Le renard brun rapide saute par-dessus le chien paresseux puis continue vers la forêt.",
    "Быстрая коричневая лиса прыгает через ленивую собаку и бежит дальше в лес.",
    "तेज़ भूरी लोमड़ी आलसी कुत्ते के ऊपर कूदती है और फिर जंगल की ओर भागती है।",
    "素早い茶色の狐は怠け者の犬を飛び越えて森の方へ走っていきます。",
)


def synthetic_responses(prompts: list[data.Prompt], seed: int = 0) -> list[dict[str, object]]:
    """Long, varied responses, one per prompt, reproducible from ``seed``."""
    rnd = random.Random(seed)
    texts = [p.prompt for p in prompts]
    rows = []
    for p in prompts:
        body = [rnd.choice(texts) for _ in range(rnd.randint(2, 8))]
        style = rnd.randrange(10)
        if style == 0:
            response = "\n\n".join(body).upper()
        elif style == 1:
            response = "\n\n".join(body).lower().replace(",", "")
        elif style == 2:
            response = "\n***\n".join(body) + "\nP.S. " + rnd.choice(texts)
        elif style == 3:
            response = "<<A Title>>\n" + "\n".join(f"* {b}" for b in body) + "\n- last point"
        elif style == 4:
            response = " ".join(rnd.choice(FOREIGN) for _ in range(rnd.randint(1, 6)))
        elif style == 5:
            response = '"' + p.prompt + "\n" + "\n".join(body) + '"'
        elif style == 6:
            response = "\n".join(f"SECTION {i + 1}\n*{b}*" for i, b in enumerate(body))
        elif style == 7:
            response = "```json\n" + json.dumps({"answer": body}) + "\n```"
        elif style == 8:
            response = body[0] + "\n******\n" + body[-1] + "\nIs there anything else I can help with?"
        else:
            response = "Sure, here it is:\n" + "\n\n".join(body) + "\n**Note** My answer is yes."
        rows.append({"key": p.key, "response": response})
    return rows


def _write_jsonl(rows: list[dict[str, object]], folder: Path, name: str) -> Path:
    path = folder / name
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _clear_memos() -> None:
    text.clear_memos()
    language.detector().clear_memos()


def time_scoring(prompts: list[data.Prompt], responses: data.Responses, repeats: int) -> list[float]:
    """Wall time of ``scoring.score`` per run, memo caches cleared before each."""
    return [_timed_ours(prompts, responses)[0] for _ in range(repeats)]


def _timed_ours(prompts: list[data.Prompt], responses: data.Responses) -> tuple[float, float]:
    """(wall, CPU of the scoring process and its children) seconds of one cold ``scoring.score``.

    Cold by construction: it runs in a child forked from a process that has scored nothing, so no memo
    (per-text results, Punkt decisions, n-gram ids, profile rows) holds anything from an earlier run,
    while the one-off initialisation done before the fork (profiles, Punkt, the random stream) is shared.
    Clearing the memos in one long-lived process is not enough: other caches keyed on the response
    texts survive and a naive repeat is many times faster than a first run.
    """
    _clear_memos()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(read_end)
            wall, cpu = time.perf_counter(), _cpu()
            scoring.score(prompts, responses)
            os.write(write_end, json.dumps([time.perf_counter() - wall, _cpu() - cpu]).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as source:
        payload = source.read()
    _, status = os.waitpid(pid, 0)
    if status != 0 or not payload:
        raise RuntimeError("the scoring child failed")
    wall, cpu = json.loads(payload)
    return wall, cpu


def _cpu() -> float:
    """CPU seconds of this process and its finished children (a forked language detector included)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def reference_scorer(folder: str) -> Any:
    """The reference's strict + loose loop over ``ifref`` (google-research's instructions, as shipped
    in lm-eval 0.4.13's ``lm_eval/tasks/ifeval``, imports renamed ``ifref``) found in ``folder``.

    Never part of the repository: a scratch copy, used only to time the reference in the same session.
    """
    sys.path.insert(0, folder)
    import langdetect
    from ifref import instructions_registry

    langdetect.DetectorFactory.seed = 0

    def score(rows: list[dict[str, Any]], responses: dict[int, str]) -> None:
        for row in rows:
            response = responses[row["key"]]
            lines = response.split("\n")
            first = "\n".join(lines[1:]).strip()
            last = "\n".join(lines[:-1]).strip()
            both = "\n".join(lines[1:-1]).strip()
            variants = [response, response.replace("*", ""), first, last, both,
                        first.replace("*", ""), last.replace("*", ""), both.replace("*", "")]
            for index, instruction_id in enumerate(row["instruction_id_list"]):
                instruction = instructions_registry.INSTRUCTION_DICT[instruction_id](instruction_id)
                kwargs = {k: v for k, v in row["kwargs"][index].items() if v is not None}
                instruction.build_description(**kwargs)
                args = instruction.get_instruction_args()
                if args and "prompt" in args:
                    instruction.build_description(prompt=row["prompt"])
                bool(response.strip() and instruction.check_following(response))
                any(v.strip() and instruction.check_following(v) for v in variants)

    return score


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/ifeval/input_data.jsonl")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--write-synthetic", help="also save the synthetic responses to this JSONL path")
    parser.add_argument("--fork", choices=("auto", "0", "1"), default="auto",
                        help="language detection in a forked child: auto (when a CPU is idle), 0 never, 1 always")
    parser.add_argument("--reference", metavar="DIR",
                        help="also time the reference (package ifref in DIR), in a fresh process after ours")
    parser.add_argument("--reference-only", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.reference_only:
        return _time_reference(args)
    os.environ["DSA_IFEVAL_FORK"] = args.fork

    start = time.perf_counter()
    prompts = data.load_prompts(args.data)
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    language.detector().prepare()
    text.ensure_punkt()
    text.count_sentences("Warm up. Punkt.")
    init_s = time.perf_counter() - start
    print(f"load {len(prompts)} prompts: {load_s:.3f} s; one-off init: {init_s:.3f} s; "
          f"fork={args.fork}; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")

    sets = {
        "echo": [{"key": p.key, "response": p.prompt} for p in prompts],
        "synthetic": synthetic_responses(prompts),
    }
    ours: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, rows in sets.items():
            path = _write_jsonl(rows, Path(tmp), f"{name}.jsonl")
            if name == "synthetic" and args.write_synthetic:
                Path(args.write_synthetic).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
            responses = data.load_responses(path, prompts)
            ours[name] = [_timed_ours(prompts, responses) for _ in range(args.repeats)]
    theirs: dict[str, list[tuple[float, float]]] = {}
    if args.reference:  # a fresh process: the reference's heap and caches do not touch ours, nor ours its
        done = subprocess.run([sys.executable, __file__, "--data", args.data, "--repeats", str(args.repeats),
                               "--reference-only", args.reference], capture_output=True, text=True, check=True)
        theirs = json.loads(done.stdout.strip().splitlines()[-1])
    for name, rows in sets.items():
        chars = sum(len(str(r["response"])) for r in rows) / len(rows)
        line = f"{name:9s} ({chars:6.0f} chars/response): " + _summary("ours", ours[name])
        if name in theirs:
            line += "; " + _summary("reference", theirs[name])
            line += (f"; speed-up {statistics.median(t[0] for t in theirs[name]) / statistics.median(t[0] for t in ours[name]):.1f}x"
                     f" wall, {statistics.median(t[1] for t in theirs[name]) / statistics.median(t[1] for t in ours[name]):.1f}x CPU")
        print(line)
    return 0


def _time_reference(args: argparse.Namespace) -> int:
    """Child mode: time the reference on the same two response sets; print {set: [[wall, cpu], ...]}."""
    raw_rows = [json.loads(line) for line in Path(args.data).read_text(encoding="utf-8").splitlines() if line.strip()]
    prompts = [types.SimpleNamespace(key=int(r["key"]), prompt=r["prompt"]) for r in raw_rows]
    text.ensure_punkt()  # the reference reads NLTK's punkt_tab too
    reference = reference_scorer(args.reference_only)
    sets = {
        "echo": {p.key: p.prompt for p in prompts},
        "synthetic": {int(r["key"]): str(r["response"]) for r in synthetic_responses(prompts)},  # type: ignore[arg-type]
    }
    reference(raw_rows, sets["echo"])  # warm-up: langdetect's profiles, NLTK's models (one-off costs)
    out = {}
    for name, by_key in sets.items():
        runs = []
        for _ in range(args.repeats):
            wall, cpu = time.perf_counter(), _cpu()
            reference(raw_rows, by_key)
            runs.append((time.perf_counter() - wall, _cpu() - cpu))
        out[name] = runs
    print(json.dumps(out))
    return 0


def _summary(label: str, runs: list[tuple[float, float]]) -> str:
    walls = [w for w, _ in runs]
    return (f"{label} median {statistics.median(walls):.3f} s (min {min(walls):.3f}, max {max(walls):.3f}), "
            f"CPU median {statistics.median(c for _, c in runs):.3f} s over {len(runs)} runs")


if __name__ == "__main__":
    sys.exit(main())
