"""The IFEval runner against servers that misbehave the way real ones do, on real loopback HTTP.

A restarted server (a separate process killed mid-run and started again 20 s later on the same port) must
cost no prompt; a stream cut before its ``finish_reason`` (llama-cpp-python's server cuts a stream when a
new request arrives) must never be stored as an answer.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from evals.ifeval import client as runner
from evals.ifeval import data
from ifeval_server import FaultPlan, serve
from ifeval_support import REPO, SAMPLE_INPUT

SERVER_SCRIPT = REPO / "tests" / "ifeval_server.py"


def _settings(url: str, out: Path, **changes: Any) -> runner.Settings:
    base: dict[str, Any] = dict(base_urls=[url], model="m", out=str(out), data=str(SAMPLE_INPUT), concurrency=2,
                                progress=False, timeout_s=5.0, backoff_s=0.01, max_backoff_s=0.05,
                                max_attempts=3, set_aside_after=50)
    base.update(changes)
    return runner.Settings(**base)


def _records(folder: Path, name: str = "responses.jsonl") -> dict[int, dict[str, Any]]:
    path = folder / name
    if not path.is_file():
        return {}
    return {r["key"]: r for r in map(json.loads, path.read_text(encoding="utf-8").splitlines())}


@pytest.mark.parametrize("stream", [True, False])
def test_an_answer_without_finish_reason_is_retried_then_failed_never_stored(tmp_path: Path, stream: bool) -> None:
    prompts = data.load_prompts(SAMPLE_INPUT)
    plan = FaultPlan()
    once = [prompts[0], prompts[1], prompts[2]]
    plan.per_prompt = {p.prompt: ["cut"] for p in once}
    if stream:
        plan.per_prompt[prompts[2].prompt] = ["eof"]  # the body ends without [DONE] too
    always_cut = prompts[3]
    plan.per_prompt[always_cut.prompt] = ["cut"] * 3
    with serve(plan) as (url, plan):
        summary = runner.run(_settings(url, tmp_path / "run", stream=stream))
    answers = _records(tmp_path / "run")
    for prompt in once:  # the retry's whole answer is what was stored, marked finished
        assert answers[prompt.key]["response"] == prompt.prompt and answers[prompt.key]["finish_reason"] == "stop"
        assert answers[prompt.key]["attempts"] == 2
    assert always_cut.key not in answers  # three cut answers: counted as failed, none stored
    assert list(_records(tmp_path / "run", "failures.jsonl")) == [always_cut.key]
    outcome = summary["outcome"]
    assert [f["key"] for f in outcome.failed] == [always_cut.key] and summary["missing"] == [always_cut.key]
    assert "without a finish_reason" in outcome.failed[0]["errors"][0] or "no finish_reason" in \
        outcome.failed[0]["errors"][0]
    assert outcome.errors["unfinished"] == 6 and outcome.retries["unfinished"] == 5
    assert len(answers) == len(prompts) - 1 and plan.requests[always_cut.prompt] == 3


def test_a_server_that_interrupts_streams_like_llama_cpp_python_gets_none_stored(tmp_path: Path) -> None:
    prompts = data.load_prompts(SAMPLE_INPUT)[:16]
    with serve(FaultPlan(interrupt_streams=True, chunk_delay_s=0.02)) as (url, plan):
        summary = runner.run(_settings(url, tmp_path / "run", stream=True, concurrency=2, max_attempts=4), prompts)
    answers = _records(tmp_path / "run")
    assert plan.interrupted >= 3  # two streams at a time: each arrival cut the other one
    assert summary["outcome"].retries["unfinished"] >= 3
    for key, record in answers.items():  # whatever was stored is a whole answer, finished
        prompt = next(p.prompt for p in prompts if p.key == key)
        assert record["response"] == prompt and record["finish_reason"] == "stop"
    failed = {f["key"] for f in summary["outcome"].failed}
    assert failed.isdisjoint(answers) and failed | set(answers) == {p.key for p in prompts}
    assert sorted(failed) == summary["missing"]


def _start_server(port: int = 0) -> tuple[subprocess.Popen[str], int]:
    """The fault server as its own process (``--latency 0.2``); its port once it listens."""
    child = subprocess.Popen([sys.executable, str(SERVER_SCRIPT), "--port", str(port), "--latency", "0.2"],
                             env=dict(os.environ, PYTHONPATH=f"{REPO}:{REPO / 'tests'}"), stdout=subprocess.PIPE,
                             text=True)
    line = child.stdout.readline() if child.stdout else ""
    assert line.strip().isdigit(), f"the server did not start: {line!r}"
    deadline = time.monotonic() + 30
    import httpx

    while True:  # the port is printed before uvicorn accepts
        try:
            httpx.post(f"http://127.0.0.1:{line.strip()}/v1/completions", json={"prompt": "up?"}, timeout=5)
            return child, int(line)
        except httpx.TransportError:
            assert time.monotonic() < deadline, "the server never accepted a connection"
            time.sleep(0.1)


def test_a_server_killed_and_restarted_20s_later_loses_no_prompt(tmp_path: Path) -> None:
    prompts = data.load_prompts(SAMPLE_INPUT)
    server, port = _start_server()
    out = tmp_path / "run"
    settings = _settings(f"http://127.0.0.1:{port}/v1", out, concurrency=4, timeout_s=10.0, backoff_s=1.0,
                         max_backoff_s=2.0, max_attempts=6, set_aside_after=5)
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(summary=runner.run(settings, prompts)), daemon=True)
    try:
        thread.start()
        deadline = time.monotonic() + 60
        while len(_records(out)) < 10:
            assert time.monotonic() < deadline and thread.is_alive(), "the run did not get going"
            time.sleep(0.05)
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=10)
        answered_at_kill = len(_records(out))
        time.sleep(20)
        assert thread.is_alive(), "the run ended while its only server was down"
        server, _ = _start_server(port)
        thread.join(timeout=120)
        assert not thread.is_alive(), "the run did not finish after the server came back"
    finally:
        server.kill()
        server.wait(timeout=10)
    summary = result["summary"]
    outcome = summary["outcome"]
    assert answered_at_kill < len(prompts)  # killed mid-run
    assert not outcome.failed and not summary["missing"] and outcome.answered == outcome.asked == len(prompts)
    assert set(_records(out)) == {p.key for p in prompts} and not _records(out, "failures.jsonl")
    assert outcome.errors["connection"] >= 5  # the outage was seen ...
    (report,) = outcome.servers
    assert report["times_set_aside"] >= 1 and report["came_back"] >= 1 and not report["dropped"]  # ... and survived
    assert report["set_aside"] is None and outcome.probes_failed >= 1
