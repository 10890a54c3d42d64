"""`dsa-validate serve`: a real server on 127.0.0.1 over the real engine, driven by the `openai` package's client.

One server per module (the model loads once per process); small engine settings and 4-8 token answers keep it to
seconds. Oracles are independent of the server: token counts come from the tokenizer, stop-string cuts from the
same request's uncut text, greedy determinism from repeating the request.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'dsa-validation[serve]')")
pytest.importorskip("uvicorn", reason="the serve extra is not installed (pip install 'dsa-validation[serve]')")
openai = pytest.importorskip("openai", reason="the serve extra is not installed (pip install 'dsa-validation[serve]')")
httpx = pytest.importorskip("httpx", reason="httpx comes with openai")

from serve_process import skip_without_weights  # noqa: E402
from tests.support import requires_paddle  # noqa: E402

pytestmark = requires_paddle

MAX_MODEL_LEN = 512
ENGINE_OPTIONS = dict(num_blocks=96, max_num_seqs=32, max_num_batched_tokens=1024, max_model_len=MAX_MODEL_LEN)
CHAT = [{"role": "user", "content": "Name three colours."}]
PROMPT = "The capital of France is"


def _start(model=None, **overrides):
    """A server on a free loopback port; ``model`` shares an already loaded model (the engine is new)."""
    from evals.engine.engine import Engine, EngineConfig
    from evals.serve.server import ServerConfig, start_in_thread

    skip_without_weights()
    settings = dict(slot_mapping="single_step", block_size=16, padding="capture", port=0,
                    engine_options=dict(ENGINE_OPTIONS))
    config = ServerConfig(**{**settings, **overrides})
    engine = Engine(EngineConfig(slot_mapping=config.slot_mapping, block_size=config.block_size,
                                 padding=config.padding, **config.engine_options), model=model)
    return config, start_in_thread(config, engine=engine)


@pytest.fixture(scope="module")
def server() -> Iterator:
    config, running = _start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def model(server) -> str:
    return openai.OpenAI(base_url=server.base_url, api_key="unused").models.list().data[0].id


@pytest.fixture()
def client(server):
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=120)


def _free_blocks(server) -> int:
    return server.engine.allocator.num_free


def _wait_for(predicate, timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_models_lists_the_served_model_named_after_its_slot_mapping(server, model) -> None:
    assert model == "smollm2-135m-dsa-single_step"
    health = httpx.get(server.base_url.removesuffix("/v1") + "/health").json()
    assert health["status"] == "ok"


def test_listens_on_loopback_only_by_default(server) -> None:
    from evals.serve.server import ServerConfig, is_loopback
    from validation.cli import build_parser

    assert ServerConfig().host == "127.0.0.1"
    assert build_parser().parse_args(["serve"]).host == "127.0.0.1"
    assert server.host == "127.0.0.1"
    with socket.create_connection((server.host, server.port), timeout=5):
        pass
    assert is_loopback("::1") and is_loopback("localhost") and not is_loopback("0.0.0.0")


def test_chat_completion_counts_usage_with_the_tokenizer(client, model) -> None:
    from evals.engine.tokenizer import load_tokenizer

    tok = load_tokenizer()
    reply = client.chat.completions.create(model=model, messages=CHAT, max_tokens=6, seed=7)
    choice = reply.choices[0]
    assert reply.object == "chat.completion" and choice.message.role == "assistant"
    assert isinstance(choice.message.content, str) and choice.message.content
    expected_prompt = len(tok.encode(tok.apply_chat_template(CHAT, add_generation_prompt=True)))
    assert reply.usage.prompt_tokens == expected_prompt
    assert 1 <= reply.usage.completion_tokens <= 6
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    if choice.finish_reason == "length":
        assert reply.usage.completion_tokens == 6
    else:
        assert choice.finish_reason == "stop"


def test_max_tokens_ends_a_completion_with_length(client, model) -> None:
    from evals.engine.tokenizer import load_tokenizer

    reply = client.completions.create(model=model, prompt=PROMPT, max_tokens=5)
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage.completion_tokens == 5
    assert reply.usage.prompt_tokens == len(load_tokenizer().encode(PROMPT))
    token_ids = client.completions.create(model=model, prompt=load_tokenizer().encode(PROMPT), max_tokens=5)
    assert token_ids.choices[0].text == reply.choices[0].text  # a token-id prompt is the same prompt


def test_greedy_answers_repeat_and_streaming_text_equals_non_streaming(client, model) -> None:
    first = client.completions.create(model=model, prompt=PROMPT, max_tokens=6, temperature=0.7)
    again = client.completions.create(model=model, prompt=PROMPT, max_tokens=6, seed=123)
    assert first.choices[0].text == again.choices[0].text
    chunks = list(client.completions.create(model=model, prompt=PROMPT, max_tokens=6, stream=True,
                                            stream_options={"include_usage": True}))
    streamed = "".join(c.choices[0].text for c in chunks if c.choices)
    assert streamed == first.choices[0].text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage.completion_tokens == 6

    chat = client.chat.completions.create(model=model, messages=CHAT, max_tokens=6)
    chat_chunks = list(client.chat.completions.create(model=model, messages=CHAT, max_tokens=6, stream=True))
    assert chat_chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chat_chunks) == chat.choices[0].message.content
    assert chat_chunks[-1].choices[0].finish_reason == chat.choices[0].finish_reason


def test_stop_string_cuts_the_text_before_it(client, model) -> None:
    full = client.completions.create(model=model, prompt=PROMPT, max_tokens=8).choices[0].text
    stripped = full.strip()
    assert len(stripped) >= 3, f"need a longer answer to pick a stop string from: {full!r}"
    stop = stripped[len(stripped) // 2:len(stripped) // 2 + 2]
    cut = full.find(stop)
    reply = client.completions.create(model=model, prompt=PROMPT, max_tokens=8, stop=[stop, "\u2603never"])
    assert reply.choices[0].finish_reason == "stop"
    assert reply.choices[0].text == full[:cut]
    chunks = list(client.completions.create(model=model, prompt=PROMPT, max_tokens=8, stop=stop, stream=True))
    assert "".join(c.choices[0].text for c in chunks) == full[:cut]
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_32_concurrent_clients_all_get_answers_batched_together(server, model) -> None:
    steps_before = server.engine._steps if hasattr(server.engine, "_steps") else None
    max_tokens = 4

    async def ask_all():
        async with openai.AsyncOpenAI(base_url=server.base_url, api_key="unused", max_retries=0,
                                      timeout=300) as aclient:
            calls = [aclient.chat.completions.create(model=model, max_tokens=max_tokens,
                                                     messages=[{"role": "user", "content": f"Count to {i}."}])
                     if i % 2 else
                     aclient.completions.create(model=model, prompt=f"Fact number {i}:", max_tokens=max_tokens)
                     for i in range(32)]
            return await asyncio.gather(*calls)

    replies = asyncio.run(ask_all())
    assert len(replies) == 32
    for reply in replies:
        text = reply.choices[0].message.content if reply.object == "chat.completion" else reply.choices[0].text
        assert isinstance(text, str)
        assert reply.choices[0].finish_reason in {"stop", "length"}
        assert 1 <= reply.usage.completion_tokens <= max_tokens
    tokens = sum(r.usage.completion_tokens for r in replies)
    if steps_before is not None:  # batched: far fewer engine steps than tokens generated one by one
        assert server.engine._steps - steps_before < tokens / 2
    assert _wait_for(lambda: _free_blocks(server) == server.engine.allocator.num_blocks)


@pytest.mark.parametrize(("path", "body", "param"), [
    ("/chat/completions", b"{not json", None),
    ("/chat/completions", {"model": None}, "messages"),
    ("/chat/completions", {"messages": []}, "messages"),
    ("/chat/completions", {"messages": "hi"}, "messages"),
    ("/chat/completions", {"messages": [{"role": "user"}]}, "messages.0.content"),
    ("/chat/completions", {"messages": [{"role": "wizard", "content": "x"}]}, "messages.0.role"),
    ("/chat/completions", {"messages": CHAT, "max_tokens": -1}, "max_tokens"),
    ("/chat/completions", {"messages": CHAT, "max_tokens": "8"}, "max_tokens"),
    ("/chat/completions", {"messages": CHAT, "stop": 5}, "stop"),
    ("/chat/completions", {"messages": CHAT, "stream": "yes"}, "stream"),
    ("/chat/completions", {"messages": CHAT, "temperature": 5}, "temperature"),
    ("/chat/completions", {"messages": CHAT, "n": 2}, "n"),
    ("/completions", {}, "prompt"),
    ("/completions", {"prompt": 42}, "prompt"),
    ("/completions", {"prompt": [1] * (MAX_MODEL_LEN + 1)}, "prompt"),
    ("/completions", {"prompt": PROMPT, "max_tokens": MAX_MODEL_LEN}, "max_tokens"),
    ("/completions", {"prompt": [10 ** 9]}, "prompt"),
])
def test_bad_requests_get_400_in_the_openai_error_shape(server, model, path, body, param) -> None:
    if isinstance(body, dict):
        body = json.dumps({"model": model, **body} if "model" not in body else body).encode()
    response = httpx.post(server.base_url + path, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["message"]
    assert error["param"] == param, error
    assert "Traceback" not in error["message"]


def test_openai_client_sees_400_and_404(client, model) -> None:
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        client.chat.completions.create(model=model, messages=CHAT, max_tokens=0)
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.chat.completions.create(model="gpt-4", messages=CHAT, max_tokens=4)


def test_a_client_that_disconnects_mid_request_frees_its_blocks(server, model) -> None:
    initial = server.engine.allocator.num_blocks
    assert _wait_for(lambda: _free_blocks(server) == initial)
    body = json.dumps({"model": model, "prompt": PROMPT, "max_tokens": 400}).encode()
    with socket.create_connection((server.host, server.port), timeout=10) as sock:  # non-streaming
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        assert _wait_for(lambda: _free_blocks(server) < initial), "the request never took blocks"
    assert _wait_for(lambda: _free_blocks(server) == initial), "the aborted request kept its blocks"

    with httpx.stream("POST", server.base_url + "/completions", timeout=60,
                      json={"model": model, "prompt": PROMPT, "max_tokens": 400, "stream": True}) as response:
        lines = response.iter_lines()
        while not next(lines).startswith("data: {"):
            pass
        assert _free_blocks(server) < initial
    assert _wait_for(lambda: _free_blocks(server) == initial), "the aborted stream kept its blocks"


@pytest.fixture(scope="module")
def keyed_server(server) -> Iterator:
    config, running = _start(server.engine.model, api_key="s3cret-key")
    yield running
    running.stop()


def test_api_key_is_required_when_set(keyed_server) -> None:
    url = keyed_server.base_url
    for key in ("wrong", ""):
        with pytest.raises(openai.AuthenticationError) as caught:
            openai.OpenAI(base_url=url, api_key=key or "x", max_retries=0).models.list()
        assert caught.value.body["code"] == "invalid_api_key"
    bare = httpx.post(url + "/chat/completions", json={"messages": CHAT})
    assert bare.status_code == 401 and bare.json()["error"]["message"]
    good = openai.OpenAI(base_url=url, api_key="s3cret-key", max_retries=0)
    model = good.models.list().data[0].id
    assert good.completions.create(model=model, prompt=PROMPT, max_tokens=4).usage.completion_tokens == 4


def test_serve_command_starts_on_loopback_and_reads_the_key_from_the_environment() -> None:
    from serve_process import start_serve

    served = start_serve("--block-size", "16", "--api-key-env", "DSA_TEST_KEY", env={"DSA_TEST_KEY": "k-123"})
    try:
        assert served.url.startswith("http://127.0.0.1:"), "".join(served.lines)
        assert not any("k-123" in line for line in served.lines)  # the key is never printed
        response = httpx.get(f"{served.url}/models", headers={"Authorization": "Bearer k-123"})
        assert response.json()["data"][0]["id"] == "smollm2-135m-dsa-oracle"
    finally:
        served.stop()


def test_the_banner_names_the_known_findings_a_modelled_bug_brings() -> None:
    from evals.serve.startup_banner import applicable_findings, banner

    assert applicable_findings("oracle", "none") == applicable_findings("oracle", "capture") == []
    assert applicable_findings("single_step", "none") == []
    capture = applicable_findings("single_step", "capture")
    assert capture and all("padding" in e.scenario_prefix for e in capture)
    lines = banner("m", "single_step", 64, "capture", 2048, False)
    assert "slot mapping single_step, padding capture" in lines[0]
    assert len(lines) == 2 + len(capture) and lines[-1].startswith("note: answers follow this path")
    assert all(line.startswith("warning: known finding applies") for line in lines[1:-1])
    assert not any(line.startswith("note:") for line in banner("m", "oracle", 64, "none", 2048, False))


def test_serve_command_rejects_bad_flags_and_a_taken_port_in_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        for argv, needle in ((["serve", "--port", "http"], "--port"),
                             (["serve", "--api-key-env", "DSA_SURELY_UNSET_VARIABLE"], "DSA_SURELY_UNSET_VARIABLE"),
                             (["serve", "--port", port], f"127.0.0.1:{port}")):
            env = {k: v for k, v in os.environ.items() if k != "DSA_SURELY_UNSET_VARIABLE"}
            done = subprocess.run([sys.executable, "-m", "validation.cli", *argv], env=env, capture_output=True,
                                  text=True, timeout=120)
            assert done.returncode == 2, done.stderr
            assert needle in done.stderr and "Traceback" not in done.stderr
            assert len(done.stderr.strip().splitlines()) <= 3, done.stderr


@pytest.fixture(scope="module")
def failing_server(server) -> Iterator:
    from pathlib import Path

    impl = f"{Path(__file__).with_name('server_faulty_impl.py')}:FailsPastPosition"
    config, running = _start(server.engine.model, slot_mapping=impl)
    yield running
    running.stop()


def test_an_engine_failure_answers_500_or_a_stream_error_and_frees_the_request(failing_server) -> None:
    from tests.server_faulty_impl import FAIL_AT, PAST_ANY_CACHE

    server = failing_server
    client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=120)
    model = client.models.list().data[0].id
    initial = server.engine.allocator.num_blocks
    with pytest.raises(openai.InternalServerError) as caught:
        client.completions.create(model=model, prompt=PROMPT, max_tokens=FAIL_AT + 8)
    assert caught.value.body["code"] == "engine_error"
    message = caught.value.body["message"]
    assert message.startswith("engine step failed") and str(PAST_ANY_CACHE) in message  # names the bad slot
    assert _wait_for(lambda: _free_blocks(server) == initial)
    with pytest.raises(openai.APIError, match="engine step failed"):
        for _ in client.completions.create(model=model, prompt=PROMPT, max_tokens=FAIL_AT + 8, stream=True):
            pass
    assert _wait_for(lambda: _free_blocks(server) == initial)
    # the server keeps serving requests the faulty mapping gets right
    reply = client.completions.create(model=model, prompt=PROMPT, max_tokens=4)
    assert reply.usage.completion_tokens == 4


def test_a_full_engine_answers_503_with_retry_after_and_the_rest_still_complete(server) -> None:
    _, tiny = _start(server.engine.model, engine_options={**ENGINE_OPTIONS, "max_num_seqs": 1, "max_waiting": 2})
    try:
        async def burst():
            async with httpx.AsyncClient(base_url=tiny.base_url, timeout=120) as http:
                return await asyncio.gather(*[http.post("/completions", json={"prompt": f"{PROMPT} {i}",
                                                                              "max_tokens": 4}) for i in range(8)])

        responses = asyncio.run(burst())
    finally:
        tiny.stop()
    codes = sorted(r.status_code for r in responses)
    assert 503 in codes and 200 in codes, codes
    for r in responses:
        if r.status_code == 503:
            assert r.headers["retry-after"] == "1"
            assert r.json()["error"]["code"] == "server_overloaded"
        else:
            assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 4


def test_two_servers_in_one_process_legacy_and_single_step_answer_identically(server) -> None:
    """The main job's set-up: two embedded servers differing only in the slot mapping (block size 64, no padding),
    asked the same prompts at the same time (both engine threads stepping at once), one request per server at a time
    so that both see the same batches."""
    started = [_start(server.engine.model, slot_mapping=name, block_size=64, padding="none")[1]
               for name in ("legacy", "single_step")]
    prompts = [PROMPT, "List two fruits:", "1, 2, 3,"]
    try:
        async def ask(running) -> list[str]:
            async with openai.AsyncOpenAI(base_url=running.base_url, api_key="unused", max_retries=0,
                                          timeout=300) as aclient:
                model = (await aclient.models.list()).data[0].id
                return [(await aclient.completions.create(model=model, prompt=p, max_tokens=6)).choices[0].text
                        for p in prompts]

        async def both():
            return await asyncio.gather(*(ask(running) for running in started))

        legacy, single_step = asyncio.run(both())
    finally:
        for running in started:
            running.stop()
    assert legacy == single_step
    assert all(legacy)
