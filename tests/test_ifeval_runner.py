"""The IFEval runner against real HTTP servers on 127.0.0.1 (``ifeval_server.py``): answers, faults, resume.

Nothing is mocked: the runner's httpx clients talk to a uvicorn server in this process (a thread) or,
for the SIGKILL test, the runner is a separate process killed mid-run and started again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evals.ifeval import data, client as runner
from ifeval_server import FaultPlan, serve
from ifeval_support import REPO, SAMPLE_INPUT, real_data_path
from validation.errors import InputError

SECRET = "sk-test-SECRET-d41d8cd98f00b204"


def _settings(url: str | list[str], out: Path, **changes: object) -> runner.Settings:
    base = dict(base_urls=url if isinstance(url, list) else [url], model="test-model", out=str(out),
                data=str(SAMPLE_INPUT), concurrency=8, progress=False, timeout_s=5.0, backoff_s=0.01,
                max_backoff_s=2.0)
    base.update(changes)
    return runner.Settings(**base)  # type: ignore[arg-type]


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _assert_no_secret(folder: Path, *texts: str) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), f"the API key leaked into {path}"
    for text in texts:
        assert SECRET not in text


def test_all_541_prompts_complete_with_one_answer_each(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prompts_path = real_data_path()
    monkeypatch.setenv("DSA_TEST_KEY", SECRET)
    with serve() as (url, plan):
        summary = runner.run(_settings(url, tmp_path / "run", data=str(prompts_path), concurrency=32,
                                       api_key_env="DSA_TEST_KEY"))
    records = _lines(tmp_path / "run" / "responses.jsonl")
    keys = [r["key"] for r in records]
    assert len(keys) == 541 and len(set(keys)) == 541
    assert {p.key for p in data.load_prompts(prompts_path)} == set(keys)
    assert sum(plan.requests.values()) == 541  # each prompt asked once
    assert set(plan.auth_headers) == {f"Bearer {SECRET}"}  # the key was sent, and only there
    assert summary["report"]["counts"]["responses_matched"] == 541
    echoed = records[0]
    assert echoed["response"] == echoed["prompt"] and echoed["finish_reason"] == "stop"
    assert echoed["server"] == url and echoed["attempts"] == 1 and echoed["usage"]["completion_tokens"] > 0
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["settings"]["api_key_env"] == "DSA_TEST_KEY" and meta["ended"] and meta["answers"] == 541
    assert json.loads((tmp_path / "run" / "scores.json").read_text())["metrics"] == summary["report"]["metrics"]
    _assert_no_secret(tmp_path)


def test_sigkill_then_resume_ends_with_every_answer_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prompts_path = real_data_path()
    out = tmp_path / "run"
    store = out / "responses.jsonl"
    env = dict(os.environ, DSA_TEST_KEY=SECRET, PYTHONPATH=str(REPO))
    with serve(FaultPlan(latency_s=0.02)) as (url, plan):
        command = [sys.executable, "-m", "validation.cli", "ifeval", "run", "--base-url", url, "--model", "m",
                   "--data", str(prompts_path), "--out", str(out), "--concurrency", "8", "--no-progress",
                   "--api-key-env", "DSA_TEST_KEY"]
        child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while not (store.is_file() and store.read_bytes().count(b"\n") >= 150):
            assert time.monotonic() < deadline and child.poll() is None, "the run never got going"
            time.sleep(0.01)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        before_kill = store.read_bytes()
        kept = _lines(store)
        assert 150 <= len(kept) < 541
        with store.open("ab") as handle:  # a write cut short by the kill: half a line, no newline
            handle.write(b'{"key": 1000, "prompt": "Write a 300+ word summ')
        asked_first = _settled(plan)  # requests the killed run had sent, all of them seen by the server
        done = subprocess.run(command + ["--resume"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    final = _lines(store)
    keys = [r["key"] for r in final]
    assert len(keys) == 541 and len(set(keys)) == 541  # none lost, none twice
    assert store.read_bytes().startswith(before_kill)  # every stored answer kept, byte for byte
    asked_again = sum(plan.requests.values()) - asked_first
    assert asked_again == 541 - len(kept)  # only what was missing
    meta = json.loads((out / "run.json").read_text())
    assert meta["runs"][-1]["torn_bytes_cut"] == len(b'{"key": 1000, "prompt": "Write a 300+ word summ')
    assert meta["runs"][-1]["already_answered"] == len(kept)
    _assert_no_secret(out, done.stdout, done.stderr)


@pytest.mark.parametrize(("sig", "code", "word"),
                         [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")])
def test_sigterm_or_ctrl_c_keeps_every_answer_and_says_how_to_go_on(tmp_path: Path, sig: signal.Signals, code: int,
                                                                   word: str) -> None:
    out = tmp_path / "run"
    store = out / "responses.jsonl"
    with serve(FaultPlan(latency_s=0.02)) as (url, _plan):
        command = [sys.executable, "-m", "validation.cli", "ifeval", "run", "--base-url", url, "--model", "m",
                   "--data", str(real_data_path()), "--out", str(out), "--concurrency", "8", "--no-progress"]
        child = subprocess.Popen(command, env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, start_new_session=True,
                                 preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.monotonic() + 60
        while not (store.is_file() and store.read_bytes().count(b"\n") >= 50):
            assert time.monotonic() < deadline and child.poll() is None, "the run never got going"
            time.sleep(0.01)
        os.killpg(child.pid, sig)  # Ctrl-C reaches the whole group; SIGTERM is sent to it too by service managers
        _, stderr = child.communicate(timeout=60)
    kept = _lines(store)
    assert child.returncode == code and 50 <= len(kept) < 541, stderr
    assert f"{len(kept)} of 541 prompts answered so far, kept in {store}" in stderr and "--resume" in stderr
    assert stderr.rstrip().endswith(f"ifeval: {word}") and "Traceback" not in stderr, stderr


def _settled(plan: FaultPlan) -> int:
    """The server's request count once it has stopped changing (a killed client's last bytes read)."""
    seen, since = sum(plan.requests.values()), time.monotonic()
    while time.monotonic() - since < 0.5:
        time.sleep(0.05)
        now = sum(plan.requests.values())
        if now != seen:
            seen, since = now, time.monotonic()
    return seen


def test_injected_faults_are_retried_and_counted(tmp_path: Path) -> None:
    prompts = data.load_prompts(SAMPLE_INPUT)
    plan = FaultPlan(retry_after="1", hang_s=4.0)
    faults = {0: ["500", "500"], 1: ["429"], 2: ["timeout"], 3: ["drop"], 4: ["malformed"], 5: ["empty"]}
    for index, sequence in faults.items():
        plan.per_prompt[prompts[index].prompt] = list(sequence)
    with serve(plan) as (url, plan):
        summary = runner.run(_settings(url, tmp_path / "run", timeout_s=1.5))
    outcome = summary["outcome"]
    assert outcome.answered == len(prompts) and not outcome.failed
    expected = {"5xx": 2, "429": 1, "timeout": 1, "connection": 1, "malformed": 1, "empty_choices": 1}
    assert dict(plan.faults_sent) == {"500": 2, "429": 1, "timeout": 1, "drop": 1, "malformed": 1, "empty": 1}
    # each injected fault retried and counted by its kind (a loaded machine may add a real timeout or two)
    assert dict(outcome.retries) | {"timeout": 1} == expected and outcome.retries["timeout"] >= 1
    assert outcome.errors == outcome.retries
    assert json.loads((tmp_path / "run" / "run.json").read_text())["runs"][-1]["retries"] == dict(outcome.retries)
    arrivals = plan.request_times[prompts[1].prompt]
    assert arrivals[1] - arrivals[0] >= 0.95  # Retry-After: 1 was honoured
    attempts = {r["key"]: r["attempts"] for r in _lines(tmp_path / "run" / "responses.jsonl")}
    assert attempts[prompts[0].key] >= 3 and attempts[prompts[5].key] >= 2 and min(attempts.values()) == 1


def test_a_prompt_that_keeps_failing_is_reported_then_resumed(tmp_path: Path) -> None:
    prompts = data.load_prompts(SAMPLE_INPUT)
    stubborn = prompts[7]
    out = tmp_path / "run"
    with serve(FaultPlan(fail_prompts={stubborn.prompt})) as (url, plan):
        done = subprocess.run(
            [sys.executable, "-m", "validation.cli", "ifeval", "run", "--base-url", url, "--model", "m",
             "--data", str(SAMPLE_INPUT), "--out", str(out), "--no-progress", "--max-attempts", "3",
             "--retry-backoff", "0.01", "--set-aside-after", "50"],
            env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=60)
        assert done.returncode == 1, done.stderr
        assert f"FAILED key {stubborn.key} after 3 attempts" in done.stdout
        assert "run again with --resume" in done.stdout
        failures = _lines(out / "failures.jsonl")
        assert [f["key"] for f in failures] == [stubborn.key] and len(failures[0]["errors"]) == 3
        assert stubborn.key in json.loads((out / "run.json").read_text())["missing"]
        plan.fail_prompts.clear()
        summary = runner.run(_settings(url, out, resume=True, model="m"))
    assert summary["outcome"].asked == 1 and not summary["missing"]
    assert len({r["key"] for r in _lines(out / "responses.jsonl")}) == len(prompts)


def test_a_failing_server_is_set_aside_and_the_other_answers(tmp_path: Path) -> None:
    with serve(FaultPlan(always="500")) as (bad, _), serve() as (good, good_plan):
        summary = runner.run(_settings([bad, good], tmp_path / "run", set_aside_after=3))
    outcome = summary["outcome"]
    assert outcome.answered == len(data.load_prompts(SAMPLE_INPUT)) and not outcome.failed
    servers = {s["url"]: s for s in outcome.servers}
    assert servers[bad]["set_aside"].startswith("3 consecutive failures") and servers[bad]["answers"] == 0
    assert servers[good]["set_aside"] is None and servers[good]["answers"] == outcome.answered
    assert outcome.errors["5xx"] >= 3


def test_requests_are_spread_over_servers(tmp_path: Path) -> None:
    with serve(FaultPlan(latency_s=0.05)) as (one, plan_one), serve(FaultPlan(latency_s=0.05)) as (two, plan_two):
        runner.run(_settings([one, two], tmp_path / "run", concurrency=8))
    first, second = sum(plan_one.requests.values()), sum(plan_two.requests.values())
    assert first + second == 61 and min(first, second) >= 20


@pytest.mark.parametrize("mode", ["chat", "completions"])
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("style", ["field", "tag"])
def test_reasoning_is_kept_apart_and_truncation_counted(tmp_path: Path, mode: str, stream: bool, style: str) -> None:
    prompts = data.load_prompts(SAMPLE_INPUT)
    with serve(FaultPlan(reasoning=style)) as (url, plan):
        summary = runner.run(_settings(url, tmp_path / "run", mode=mode, stream=stream, max_tokens=12,
                                       extra_body={"chat_template_kwargs": {"enable_thinking": True}},
                                       system_prompt="Be brief." if mode == "chat" else None))
    records = {r["key"]: r for r in _lines(tmp_path / "run" / "responses.jsonl")}
    for p in prompts:
        record = records[p.key]
        words = p.prompt.split(" ")
        assert record["response"] == " ".join(words[:12])  # the answer alone is scored
        assert record["reasoning"] == f"thinking about {len(p.prompt)} characters"
        assert record["finish_reason"] == ("length" if len(words) > 12 else "stop")
    assert summary["truncated"] == sorted(p.key for p in prompts if len(p.prompt.split(" ")) > 12)
    assert all(b["chat_template_kwargs"] == {"enable_thinking": True} for b in plan.bodies)
    if mode == "chat":
        assert all(b["messages"][0] == {"role": "system", "content": "Be brief."} for b in plan.bodies)


def test_split_reasoning_forms() -> None:
    assert runner.split_reasoning("<think>a</think>\n\nb", None) == ("b", "a")
    assert runner.split_reasoning("a</think>b", None) == ("b", "a")  # template opened the block
    assert runner.split_reasoning("plain", "r") == ("plain", "r")
    assert runner.split_reasoning(None, None) == ("", None)


def test_existing_run_needs_resume_and_resume_needs_same_question(tmp_path: Path) -> None:
    with serve() as (url, _):
        runner.run(_settings(url, tmp_path / "run", limit=5))
        with pytest.raises(InputError, match="already holds a run: pass --resume"):
            runner.run(_settings(url, tmp_path / "run", limit=5))
        with pytest.raises(InputError, match="model was 'test-model'"):
            runner.run(_settings(url, tmp_path / "run", resume=True, model="other"))
        summary = runner.run(_settings(url, tmp_path / "run", resume=True))
    assert summary["outcome"].asked == 56  # the 61 sample prompts less the 5 answered


def test_missing_key_variable_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "validation.cli", "ifeval", "run", "--base-url",
                           "http://127.0.0.1:9/v1", "--model", "m", "--data", str(SAMPLE_INPUT), "--out",
                           str(tmp_path / "r"), "--api-key-env", "DSA_SURELY_UNSET_VARIABLE"],
                          env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "dsa-validate ifeval: error: --api-key-env: environment variable DSA_SURELY_UNSET_VARIABLE is not set or empty"]


def test_non_utf8_files_are_one_line_with_the_byte_offset(tmp_path: Path) -> None:
    responses = tmp_path / "responses.jsonl"
    responses.write_bytes(b'{"key": 1, "response": "ok"}\n{"key": 2, "response": "caf\xe9"}\n')
    done = subprocess.run([sys.executable, "-m", "validation.cli", "ifeval", "score", "--responses", str(responses),
                           "--data", str(SAMPLE_INPUT)], env=dict(os.environ, PYTHONPATH=str(REPO)),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"dsa-validate ifeval: error: {responses}[line 2]: not UTF-8 (byte 0xe9 at byte offset 56)"]
    store = tmp_path / "run"
    store.mkdir()
    (store / "responses.jsonl").write_bytes(b'{"key": 1, "response": "\xff"}\n')
    with pytest.raises(InputError, match=r"responses.jsonl\[line 1\]: not UTF-8 \(byte 0xff at byte offset 24\)"):
        runner.run(_settings("http://127.0.0.1:9/v1", store, resume=True))
