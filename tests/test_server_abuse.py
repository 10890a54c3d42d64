"""Load and abuse against the real ``dsa-validate serve`` process on loopback (issue 19's probe, as a test).

One server for the module (the model loads once), started as a user starts it, with a key. Each test is one of the
probe's findings: the body limit (413 before parsing, a concurrent request unharmed, the server's RSS flat), the key
checked before the body, a lone surrogate, stop strings, a prompt past the context (the 8,100-token request that once
filled the KV pool), clients that disconnect mid-stream. After them a normal request still answers and every block
is free; last, SIGTERM mid-stream: the stream gets an error event, a waiting request a 503, the process exits 0.
Oracles are independent of the server: OpenAI's error shape, the tokenizer's own count, the pool's size in /health.
Times are measured in benchmarks/bench_server_abuse.py (BENCHMARKS.md), not asserted here.
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from serve_process import ServeProcess, start_serve
from support import requires_paddle

pytestmark = requires_paddle  # the served engine is the Paddle model

KEY = "abuse-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
CHAT = [{"role": "user", "content": "Name three colours."}]
BIG_BODY = json.dumps({"messages": [{"role": "user", "content": "abcd efgh " * 1_000_000}], "max_tokens": 8})
MAX_MODEL_LEN = 2048  # serve's default (evals/serve/cli.py)
DRAIN_S = 5  # serve's default --drain-seconds


@pytest.fixture(scope="module")
def served() -> Iterator[ServeProcess]:
    server = start_serve("--api-key-env", "DSA_ABUSE_KEY", env={"DSA_ABUSE_KEY": KEY})
    yield server
    server.stop()


def _error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    return error


def _chat(url: str, **body) -> httpx.Response:
    return httpx.post(f"{url}/chat/completions", json={"messages": CHAT, "max_tokens": 8, **body}, headers=AUTH,
                      timeout=300)


def _health(served: ServeProcess) -> dict:
    return httpx.get(served.url.removesuffix("/v1") + "/health", timeout=30).json()


def test_the_default_serves_the_oracle_without_padding_says_so_and_knows_paris(served) -> None:
    banner = "".join(served.lines)
    assert "slot mapping oracle (the independent truth), padding none" in banner
    assert "known findings: none recorded for this path and padding" in banner
    assert httpx.get(f"{served.url}/models", headers=AUTH).json()["data"][0]["id"] == "smollm2-135m-dsa-oracle"
    question = [{"role": "user", "content": "What is the capital of France?"}]
    answer = _chat(served.url, messages=question, max_tokens=24).json()["choices"][0]["message"]["content"]
    assert "Paris" in answer, answer


def test_a_wrong_key_is_401_before_the_body_is_read_or_validated(served) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abuse-key"}):
        for body in (b"{not json", json.dumps({"messages": "x"}).encode(), BIG_BODY.encode()[:100_000]):
            response = httpx.post(f"{served.url}/chat/completions", content=body, headers=headers)
            assert _error(response, 401)["code"] == "invalid_api_key"
    assert _error(httpx.post(f"{served.url}/chat/completions", content=b"{not json", headers=AUTH), 400)


def test_a_10mb_body_is_a_413_and_a_concurrent_request_is_unharmed(served) -> None:
    before = served.rss_kib()
    answers: dict[str, httpx.Response] = {}
    normal = threading.Thread(target=lambda: answers.setdefault("normal", _chat(served.url)))
    normal.start()
    big = httpx.post(f"{served.url}/chat/completions", content=BIG_BODY, headers=AUTH, timeout=60)
    chunked = httpx.post(f"{served.url}/chat/completions", content=iter([BIG_BODY.encode()[i:i + 65536]
                                                                         for i in range(0, len(BIG_BODY), 65536)]),
                         headers=AUTH, timeout=60)  # no Content-Length: counted as it arrives
    normal.join(timeout=300)
    for response in (big, chunked):
        assert _error(response, 413)["code"] == "request_too_large"
    assert answers["normal"].status_code == 200 and answers["normal"].json()["usage"]["completion_tokens"] >= 1
    assert served.rss_kib() - before < 50 * 1024, "the refused bodies left the server larger"


def test_a_lone_surrogate_is_a_400_naming_the_field(served) -> None:
    for path, body in (("/chat/completions", b'{"messages": [{"role": "user", "content": "x\\ud800y"}]}'),
                       ("/completions", b'{"prompt": "x\\udfffy", "max_tokens": 2}'),
                       ("/completions", b'{"prompt": "x", "stop": "\\ud800"}')):
        error = _error(httpx.post(served.url + path, content=body, headers={**AUTH, "Content-Type":
                                                                            "application/json"}), 400)
        assert "lone surrogate" in error["message"] and error["param"] in {"messages.0.content", "prompt", "stop"}


def test_stop_strings_are_bounded_in_count_and_length(served) -> None:
    assert _error(_chat(served.url, stop="x" * 400_000), 400)["param"] == "stop"
    assert _error(_chat(served.url, stop=["a", "b", "c", "d", "e"]), 400)["param"] == "stop"
    assert _chat(served.url, stop=["a" * 256, "b", "c", "d"]).status_code == 200


def test_a_prompt_past_the_context_is_refused_before_it_fills_the_pool(served) -> None:
    from evals.engine.tokenizer import load_tokenizer

    tokenizer = load_tokenizer()
    ids = tokenizer.encode(" ".join(f"w{i}" for i in range(2000)))[:8100]  # the probe's KV-pool-filling size
    text = tokenizer.decode(ids)
    assert len(ids) == 8100 and len(tokenizer.encode(text)) >= 8000
    for prompt in (text, ids):
        error = _error(httpx.post(f"{served.url}/completions", json={"prompt": prompt}, headers=AUTH, timeout=300),
                       400)
        assert error["code"] == "context_length_exceeded" and str(MAX_MODEL_LEN) in error["message"]
    long_text = "x" * (MAX_MODEL_LEN * tokenizer.max_token_chars + 1)  # refused without tokenizing
    error = _error(httpx.post(f"{served.url}/completions", json={"prompt": long_text}, headers=AUTH), 400)
    assert error["code"] == "context_length_exceeded" and "characters" in error["message"]
    assert _error(httpx.post(f"{served.url}/completions", json={"prompt": ids[:MAX_MODEL_LEN]}, headers=AUTH),
                  400)["code"] == "context_length_exceeded"


def test_clients_that_disconnect_mid_stream_leave_every_block_free(served) -> None:
    async def one(i: int, http: httpx.AsyncClient) -> str | None:
        body = {"messages": [{"role": "user", "content": f"Count to {i + 20}."}], "max_tokens": 12, "stream": True}
        async with http.stream("POST", "/chat/completions", json=body, headers=AUTH) as response:
            async for line in response.aiter_lines():
                if i % 2 and line.startswith("data: {"):
                    return None  # leaves mid-stream
                if line == "data: [DONE]":
                    return "done"
        return "ended"

    async def burst() -> list:
        async with httpx.AsyncClient(base_url=served.url, timeout=300) as http:
            return await asyncio.gather(*(one(i, http) for i in range(16)))

    ends = asyncio.run(burst())
    assert ends.count("done") == 8 and ends.count(None) == 8
    deadline = time.monotonic() + 60
    while (health := _health(served))["free_blocks"] != health["num_blocks"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert health["free_blocks"] == health["num_blocks"], health
    reply = _chat(served.url)
    assert reply.status_code == 200 and reply.json()["choices"][0]["message"]["content"]
    assert _health(served)["free_blocks"] == health["num_blocks"]


def test_sigterm_mid_stream_sends_an_error_event_a_503_and_exits_0(served) -> None:
    """Last: the module's server is stopped here."""
    body = {"messages": [{"role": "user", "content": "Write a long story about a lighthouse."}], "max_tokens": 1000}
    waiting: dict[str, httpx.Response] = {}
    with httpx.stream("POST", f"{served.url}/chat/completions", json={**body, "stream": True}, headers=AUTH,
                      timeout=120) as response:
        lines = response.iter_lines()
        while not next(lines).startswith("data: {"):
            pass
        plain = threading.Thread(target=lambda: waiting.setdefault("plain", _chat(served.url, max_tokens=1000)))
        plain.start()
        time.sleep(1.0)  # the non-streaming request is in the engine
        sent = time.monotonic()
        served.proc.send_signal(signal.SIGTERM)
        rest = [line for line in lines if line.startswith("data: ")]
    plain.join(timeout=60)
    events = [json.loads(line[6:]) for line in rest if line != "data: [DONE]"]
    assert events and events[-1].get("error", {}).get("code") == "shutting_down", rest[-3:]
    assert _error(waiting["plain"], 503)["code"] == "shutting_down"
    assert served.proc.wait(timeout=60) == 0
    # the drain (5 s) plus the engine thread's bounded join (5 s) plus the interpreter's exit: a bound, not a speed
    assert time.monotonic() - sent < DRAIN_S * 2 + 10


class _BuggyTokenizer:
    """A tokenizer with a bug: what a 500 is for (the server's own fault, not the request's)."""

    stop_token_ids = (0,)
    vocab_size = 64

    def encode(self, text: str) -> list[int]:
        raise RuntimeError("a bug in the tokenizer")

    def decode(self, ids) -> str:
        return ""

    def apply_chat_template(self, messages, add_generation_prompt: bool = True) -> str:
        return "x"


def test_a_real_bug_is_a_json_500_and_the_server_keeps_serving() -> None:
    from engine_fakes import FakeModel
    from evals.engine.engine import Engine, EngineConfig
    from evals.serve.server import ServerConfig, start_in_thread

    engine = Engine(EngineConfig(slot_mapping="oracle", block_size=16), model=FakeModel())
    engine.tokenizer = _BuggyTokenizer()
    running = start_in_thread(ServerConfig(port=0), engine=engine)
    try:
        for _ in range(2):
            error = _error(httpx.post(f"{running.base_url}/completions", json={"prompt": "hi"}), 500)
            assert error["type"] == "server_error" and "RuntimeError" in error["message"]
        ids = httpx.post(f"{running.base_url}/completions", json={"prompt": [1, 2, 3], "max_tokens": 2})
        assert ids.status_code == 200, ids.text
    finally:
        running.stop()
