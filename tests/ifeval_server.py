"""A small OpenAI-compatible server on 127.0.0.1 that answers from fixtures and injects faults on demand.

Test support for the IFEval runner (``evals/ifeval/client.py``): real HTTP on loopback, real sockets, so the
runner's client, retries and store are exercised end to end, never against a mocked client. Both
``/v1/chat/completions`` and ``/v1/completions``, streamed (SSE) or not, in the fields FastDeploy's
server returns (``reasoning_content`` beside ``content``; ``finish_reason`` ``length`` when cut).

Answers: ``answers[prompt]`` when given, else the prompt echoed. ``max_tokens`` counts words: a longer
answer is cut to that many words with ``finish_reason`` ``length``. ``reasoning`` adds a reasoning part,
as FastDeploy's ``reasoning_content`` field (``"field"``) or as a ``<think>...</think>`` block in the
content (``"tag"``).

Faults, by prompt text (``FaultPlan.per_prompt[prompt]``: a list consumed one per request, then
answers normally) or for every request to this server (``FaultPlan.always``): ``500``, ``429`` (with
``Retry-After: FaultPlan.retry_after``), ``timeout`` (answers after ``FaultPlan.hang_s``), ``drop``
(the connection is cut mid-body), ``malformed`` (200 with broken JSON), ``empty`` (200, no choices),
``cut`` (half the answer and no ``finish_reason``: a stream ends with ``data: [DONE]``, as llama-cpp-python's
server ends a stream it interrupts; a non-streamed choice carries ``finish_reason: null``), ``eof`` (a stream
that just ends, no finish_reason and no ``[DONE]``).
``FaultPlan.fail_prompts``: prompts answered with 500 every time. ``FaultPlan.interrupt_streams``: as
llama-cpp-python's server with its default ``interrupt_requests`` (``get_event_publisher`` in
``llama_cpp/server/app.py``), a stream in progress ends with ``data: [DONE]`` and no finish_reason as soon as
another request arrives (chunks ``FaultPlan.chunk_delay_s`` apart).

Run it as a process (``python tests/ifeval_server.py --latency 0.05``, prints its port) for
benchmarks; tests use ``serve()`` (a thread in the test process).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

FAULTS = ("500", "429", "timeout", "drop", "malformed", "empty", "cut", "eof")
CUTS = ("cut", "eof")  # answered, but unfinished


@dataclass
class FaultPlan:
    """What the server does wrong, and what it saw (mutable while the server runs)."""

    per_prompt: dict[str, list[str]] = field(default_factory=dict)
    always: str | None = None
    fail_prompts: set[str] = field(default_factory=set)
    retry_after: str = "0"
    hang_s: float = 5.0
    latency_s: float = 0.0
    answers: dict[str, str] = field(default_factory=dict)
    reasoning: str | None = None  # None, "field" or "tag"
    requests: Counter[str] = field(default_factory=Counter)  # prompt -> requests seen
    faults_sent: Counter[str] = field(default_factory=Counter)
    auth_headers: list[str] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    request_times: dict[str, list[float]] = field(default_factory=dict)  # prompt -> arrival times
    interrupt_streams: bool = False
    chunk_delay_s: float = 0.0
    arrivals: int = 0  # requests seen so far (an interrupting stream watches it)
    interrupted: int = 0  # streams cut by a later arrival

    def next_fault(self, prompt: str) -> str | None:
        if prompt in self.fail_prompts:
            return "500"
        queue = self.per_prompt.get(prompt)
        if queue:
            return queue.pop(0)
        return self.always


def build_app(plan: FaultPlan) -> FastAPI:
    app = FastAPI()

    async def answer(request: Request, chat: bool) -> Response:
        raw = await request.body()
        body = json.loads(raw)
        prompt = body["messages"][-1]["content"] if chat else body["prompt"]
        plan.requests[prompt] += 1
        plan.arrivals += 1
        plan.bodies.append(body)
        plan.request_times.setdefault(prompt, []).append(time.monotonic())
        plan.auth_headers.append(request.headers.get("authorization", ""))
        fault = plan.next_fault(prompt)
        if plan.latency_s:
            await asyncio.sleep(plan.latency_s)
        if fault:
            plan.faults_sent[fault] += 1
        if fault and fault not in CUTS:
            return await _fault(fault, plan)
        text = plan.answers.get(prompt, prompt)
        words = text.split(" ")
        finish: str | None = "stop"
        limit = body.get("max_tokens")
        if limit is not None and len(words) > limit:
            text, finish = " ".join(words[:limit]), "length"
        if fault in CUTS:
            text, finish = text[:len(text) // 2], None
        reasoning = None
        if plan.reasoning == "field":
            reasoning = f"thinking about {len(prompt)} characters"
        elif plan.reasoning == "tag":
            text = f"<think>thinking about {len(prompt)} characters</think>\n\n{text}"
        usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text.split()),
                 "total_tokens": len(prompt.split()) + len(text.split())}
        if body.get("stream"):
            return StreamingResponse(_chunks(chat, body, text, reasoning, finish, usage, done=fault != "eof",
                                             plan=plan),
                                     media_type="text/event-stream")
        if chat:
            choice = {"index": 0, "finish_reason": finish,
                      "message": {"role": "assistant", "content": text, "reasoning_content": reasoning}}
        else:
            choice = {"index": 0, "finish_reason": finish, "text": text, "reasoning_content": reasoning}
        return JSONResponse({"id": "cmpl-test", "object": "chat.completion" if chat else "text_completion",
                             "created": 0, "model": body.get("model", "test"), "choices": [choice],
                             "usage": usage})

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await answer(request, chat=True)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await answer(request, chat=False)

    return app


async def _fault(fault: str, plan: FaultPlan) -> Response:
    if fault == "500":
        return JSONResponse({"error": {"message": "injected server error"}}, status_code=500)
    if fault == "429":
        return JSONResponse({"error": {"message": "injected rate limit"}}, status_code=429,
                            headers={"Retry-After": plan.retry_after})
    if fault == "timeout":
        await asyncio.sleep(plan.hang_s)
        return JSONResponse({"error": {"message": "too late"}}, status_code=500)
    if fault == "malformed":
        return Response('{"id": "cmpl-test", "choices": [', media_type="application/json")
    if fault == "empty":
        return JSONResponse({"id": "cmpl-test", "object": "chat.completion", "created": 0, "model": "test",
                             "choices": [], "usage": None})
    if fault == "drop":
        async def cut() -> Any:
            yield b'{"id": "cmpl-test", '
            raise ConnectionAbortedError("injected drop")  # uvicorn closes the connection mid-body

        return StreamingResponse(cut(), media_type="application/json", headers={"Content-Length": "4096"})
    raise ValueError(fault)


async def _chunks(chat: bool, body: dict[str, Any], text: str, reasoning: str | None, finish: str | None,
                  usage: dict[str, int], done: bool = True, plan: FaultPlan | None = None) -> Any:
    pieces = [text[i:i + 16] for i in range(0, len(text), 16)] or [""]
    seen = plan.arrivals if plan else 0
    for i, piece in enumerate(pieces):
        last = i == len(pieces) - 1
        if plan and plan.chunk_delay_s:
            await asyncio.sleep(plan.chunk_delay_s)
        if plan and plan.interrupt_streams and plan.arrivals > seen and not last:
            plan.interrupted += 1
            yield "data: [DONE]\n\n"
            return
        if chat:
            delta: dict[str, Any] = {"content": piece}
            if i == 0:
                delta |= {"role": "assistant", "reasoning_content": reasoning}
            choice = {"index": 0, "delta": delta, "finish_reason": finish if last else None}
        else:
            choice = {"index": 0, "text": piece, "finish_reason": finish if last else None,
                      "reasoning_content": reasoning if i == 0 else None}
        yield f"data: {json.dumps({'id': 'c', 'object': 'chunk', 'created': 0, 'model': 'test', 'choices': [choice]})}\n\n"
    if finish and (body.get("stream_options") or {}).get("include_usage"):
        yield f"data: {json.dumps({'id': 'c', 'object': 'chunk', 'created': 0, 'model': 'test', 'choices': [], 'usage': usage})}\n\n"
    if done:
        yield "data: [DONE]\n\n"


def _bound_socket(port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


@contextlib.contextmanager
def serve(plan: FaultPlan | None = None) -> Iterator[tuple[str, FaultPlan]]:
    """Run the server in a thread on a free loopback port; yields (base URL ending in /v1, plan)."""
    plan = plan or FaultPlan()
    sock = _bound_socket()
    config = uvicorn.Config(build_app(plan), log_level="critical", access_log=False, lifespan="off",
                            timeout_keep_alive=30)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1", plan
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def main() -> int:
    parser = argparse.ArgumentParser(description="OpenAI-compatible fixture server (echoes prompts)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    args = parser.parse_args()
    sock = _bound_socket(args.port)
    print(sock.getsockname()[1], flush=True)
    config = uvicorn.Config(build_app(FaultPlan(latency_s=args.latency)), log_level="critical",
                            access_log=False, lifespan="off", backlog=4096, timeout_keep_alive=60)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
