"""An OpenAI-compatible HTTP server over the end-to-end engine (FastAPI + uvicorn).

Its only difference between a "before" and an "after" server is the slot-mapping implementation, so the IFEval runner
(`dsa-validate ifeval run`) can compare two of them exactly as it compares two FastDeploy servers. Endpoints:
``/v1/models``, ``/v1/chat/completions`` and ``/v1/completions`` (both streaming over SSE and not), ``/health``.
Concurrent requests are batched by the engine's scheduler on one engine thread (``EngineThread``). Decoding is
greedy whatever ``temperature`` says. Errors use OpenAI's shape: 400 bad request, 401 bad key (checked before the
body is read), 404 unknown model, 413 body too large, 503 engine full (with Retry-After) or shutting down, 500 engine
failure or a bug (JSON too). A client that disconnects is aborted in the engine, freeing its blocks. fastapi,
uvicorn and paddle are imported only when a server is built.

Limits, so that one client cannot stall the others (all stated in the README): the body (``max_body_bytes``, a 413
before it is parsed, ``request_guard``); a prompt with more characters than the context could hold at the
tokenizer's longest token is refused before it is tokenized; tokenizing and the chat template run on a worker
thread, never on the event loop; stop strings (``openai_protocol``). SIGTERM drains: the server stops accepting,
in-flight streams get an error event and waiting requests a 503 at once, the responses flush within ``drain_s``, and
the process exits 0.
"""

import asyncio
import contextlib
import ipaddress
import json
import logging
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from evals.serve.engine_thread import SHUTTING_DOWN, Delta, EngineThread, Failure, RequestHandle
from validation.errors import InputError

DISCONNECT_POLL_S = 0.2  # how often a non-streaming request checks that its client is still there
# 1 MiB: about 30 times the JSON of a prompt that fills the 8,192-token context with English text.
MAX_BODY_BYTES = 1 << 20
DRAIN_S = 5.0  # after SIGTERM, how long in-flight responses get to flush before the process exits
_log = logging.getLogger(__name__)


@dataclass
class ServerConfig:
    """What ``dsa-validate serve`` exposes; ``engine_options`` passes further EngineConfig fields (num_blocks ...)."""

    slot_mapping: str = "oracle"  # the independent truth: a plain ``serve`` answers correctly (issue 19)
    block_size: int = 64
    padding: str = "none"
    top_k: int | None = None
    host: str = "127.0.0.1"
    port: int = 8188
    api_key: str | None = None  # the key itself (the CLI reads it from the variable --api-key-env names)
    model_name: str | None = None
    engine_options: dict[str, Any] = field(default_factory=dict)
    max_body_bytes: int = MAX_BODY_BYTES
    drain_s: float = DRAIN_S

    @property
    def served_model(self) -> str:
        if self.model_name:
            return self.model_name
        name = self.slot_mapping.replace(":", "-").replace("/", "-")
        return f"smollm2-135m-dsa-{name}"


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_engine(config: ServerConfig) -> Any:
    """The engine the server drives (paddle is imported here)."""
    from evals.engine.engine import Engine, EngineConfig

    options: dict[str, Any] = {"slot_mapping": config.slot_mapping, "block_size": config.block_size,
                               "padding": config.padding, **config.engine_options}
    if config.top_k is not None:
        options["top_k"] = config.top_k
    return Engine(EngineConfig(**options))


class _APIError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code
        self.headers = headers


class _Completion:
    """Shapes one request's response objects (chat or text completion) and its usage."""

    def __init__(self, chat: bool, model: str) -> None:
        self.chat = chat
        self.model = model
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        self.created = int(time.time())
        self.object = "chat.completion" if chat else "text_completion"

    def full(self, text: str, finish: str, usage: dict, fingerprint: str) -> dict:
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish, "logprobs": None}
        if self.chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        return {"id": self.id, "object": self.object, "created": self.created, "model": self.model,
                "system_fingerprint": fingerprint, "choices": [choice], "usage": usage}

    def chunk(self, text: str | None, finish: str | None, fingerprint: str, first: bool = False) -> dict:
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish, "logprobs": None}
        if self.chat:
            delta: dict[str, Any] = {"role": "assistant"} if first else {}
            if text is not None:
                delta["content"] = text
            choice["delta"] = delta
        else:
            choice["text"] = text or ""
        return {"id": self.id, "object": self.object + ("" if not self.chat else ".chunk"), "created": self.created,
                "model": self.model, "system_fingerprint": fingerprint, "choices": [choice]}

    def usage_chunk(self, usage: dict, fingerprint: str) -> dict:
        return {"id": self.id, "object": self.object + (".chunk" if self.chat else ""), "created": self.created,
                "model": self.model, "system_fingerprint": fingerprint, "choices": [], "usage": usage}


def _usage(delta: Delta) -> dict:
    return {"prompt_tokens": delta.prompt_tokens, "completion_tokens": delta.completion_tokens,
            "total_tokens": delta.prompt_tokens + delta.completion_tokens}


def _sse(payload: dict | str) -> str:
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)}\n\n"


def create_app(config: ServerConfig, engine: Any, tokenizer: Any) -> Any:
    """The FastAPI app; the caller owns the engine thread's lifetime through ``app.state.engine_thread``."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, StreamingResponse
    from starlette.background import BackgroundTask
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from evals.engine.engine import QueueFull
    from evals.serve.openai_protocol import (ChatCompletionRequest, CompletionRequest, describe_validation_errors,
                                              error_body)
    from evals.serve.request_guard import RequestGuard

    model_name = config.served_model
    fingerprint = f"dsa-{config.slot_mapping}-bs{config.block_size}-{config.padding}"
    context_len = int(engine.max_model_len)
    # A prompt of more characters than this cannot fit the context whatever it says (a token spells at most
    # ``max_token_chars``): refused before the tokenizer spends a second on it.
    token_chars = getattr(tokenizer, "max_token_chars", None)
    max_prompt_chars = context_len * token_chars if isinstance(token_chars, int) else None
    runner = EngineThread(engine, tokenizer.decode, tokenizer.stop_token_ids)
    tokenizing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dsa-tokenize")
    app = FastAPI(title="dsa-validation engine server", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(RequestGuard, api_key=config.api_key, max_body_bytes=config.max_body_bytes)
    app.state.engine_thread = runner
    app.state.tokenizing = tokenizing
    app.state.config = config

    @app.exception_handler(_APIError)
    async def _api_error(_: Request, exc: _APIError) -> JSONResponse:
        return JSONResponse(error_body(exc.message, exc.type, exc.param, exc.code), exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = describe_validation_errors(list(exc.errors()))
        return JSONResponse(error_body(message, param=param), 400)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return JSONResponse(error_body(str(exc.detail), param=None, code=code), exc.status_code)

    @app.exception_handler(Exception)
    async def _bug(_: Request, exc: Exception) -> JSONResponse:  # a real bug: still JSON, logged with its traceback
        _log.error("unhandled error in a request", exc_info=exc)
        return JSONResponse(error_body(f"internal server error ({type(exc).__name__}); the server log has the "
                                       "traceback", "server_error", code="internal_error"), 500)

    async def tokenize(text_of: Callable[[], str], chars: int, prompt_field: str) -> list[int]:
        """The prompt's ids, computed on the tokenizing thread; ``chars`` (the user's text) is checked first."""
        if max_prompt_chars is not None and chars > max_prompt_chars:
            raise _APIError(400, f"This model's maximum context length is {context_len} tokens; the prompt has "
                                 f"{chars} characters, more than {context_len} tokens of at most {token_chars} "
                                 "characters can spell.", param=prompt_field, code="context_length_exceeded")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(tokenizing, lambda: tokenizer.encode(text_of()))

    def check_model(name: str | None) -> None:
        if name is not None and name != model_name:
            raise _APIError(404, f"The model '{name}' does not exist; this server serves '{model_name}'.",
                            param="model", code="model_not_found")

    async def start(prompt_ids: list[int], limit: int | None, body: Any, prompt_field: str) -> RequestHandle:
        if not prompt_ids:
            raise _APIError(400, f"'{prompt_field}': the prompt is empty.", param=prompt_field)
        room = context_len - len(prompt_ids)
        if room < 1:
            raise _APIError(400, f"This model's maximum context length is {context_len} tokens; the prompt has "
                                 f"{len(prompt_ids)}.", param=prompt_field, code="context_length_exceeded")
        if limit is not None and limit > room:
            raise _APIError(400, f"This model's maximum context length is {context_len} tokens; the request asks "
                                 f"for {len(prompt_ids)} prompt + {limit} completion tokens.", param="max_tokens",
                            code="context_length_exceeded")
        limit = room if limit is None else limit
        handle = RequestHandle(prompt_ids, limit, body.stop_strings(), body.seed)
        try:
            return await runner.submit(handle)
        except QueueFull as exc:
            raise _APIError(503, f"The engine is full, retry later ({exc}).", "server_error", code="server_overloaded",
                            headers={"Retry-After": "1"}) from None
        except ValueError as exc:
            raise _APIError(400, str(exc), param=prompt_field) from None
        except RuntimeError as exc:
            raise _APIError(503, str(exc), "server_error", code=SHUTTING_DOWN.code) from None

    async def respond(request: Request, handle: RequestHandle, shape: _Completion, stream: bool,
                      include_usage: bool) -> Any:
        if stream:  # the background abort also covers a client gone before the stream's first chunk
            return StreamingResponse(_stream(handle, shape, include_usage), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"},
                                     background=BackgroundTask(runner.abort, handle))
        watcher = asyncio.create_task(_watch_disconnect(request, handle))
        parts: list[str] = []
        try:
            while True:
                event = await handle.events.get()
                if isinstance(event, Failure):
                    raise _APIError(503 if event.code == SHUTTING_DOWN.code else 500, event.message, "server_error",
                                    code=event.code)
                if event is _GONE:
                    raise _APIError(499, "client disconnected", "client_closed_request")
                parts.append(event.text)
                if event.finish_reason is not None:
                    return shape.full("".join(parts), event.finish_reason, _usage(event), fingerprint)
        finally:
            watcher.cancel()
            runner.abort(handle)

    async def _stream(handle: RequestHandle, shape: _Completion,
                      include_usage: bool) -> AsyncIterator[str]:
        try:
            if shape.chat:
                yield _sse(shape.chunk("", None, fingerprint, first=True))
            while True:
                event = await handle.events.get()
                if isinstance(event, Failure):
                    yield _sse(error_body(event.message, "server_error", code=event.code))
                    return
                if event.text:
                    yield _sse(shape.chunk(event.text, None, fingerprint))
                if event.finish_reason is not None:
                    yield _sse(shape.chunk(None if shape.chat else "", event.finish_reason, fingerprint))
                    if include_usage:
                        yield _sse(shape.usage_chunk(_usage(event), fingerprint))
                    yield _sse("[DONE]")
                    return
        finally:  # also when Starlette cancels the stream because the client went away
            runner.abort(handle)

    async def _watch_disconnect(request: Request, handle: RequestHandle) -> None:
        while not handle.done:
            await asyncio.sleep(DISCONNECT_POLL_S)
            if await request.is_disconnected():
                runner.abort(handle)
                handle.events.put_nowait(_GONE)
                return

    @app.get("/health")
    async def health() -> dict:  # the pool's state too: an operator (and the abuse test) sees leaked blocks
        allocator = engine.allocator
        return {"status": "ok", "model": model_name, "num_blocks": int(allocator.num_blocks),
                "free_blocks": int(allocator.num_free)}

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": 0,
                                            "owned_by": "dsa-validation", "root": model_name,
                                            "max_model_len": context_len}]}

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
        check_model(body.model)
        messages = [{"role": m.role if m.role != "developer" else "system", "content": m.text()}
                    for m in body.messages]
        prompt_ids = await tokenize(lambda: _chat_prompt(tokenizer, messages),
                                    sum(len(m["content"]) for m in messages), "messages")
        handle = await start(prompt_ids, body.token_limit(), body, "messages")
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return await respond(request, handle, _Completion(True, model_name), body.stream, include_usage)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request) -> Any:
        check_model(body.model)
        prompt = body.prompt[0] if isinstance(body.prompt, list) and isinstance(body.prompt[0], str) else body.prompt
        if isinstance(prompt, str):
            prompt_ids = await tokenize(lambda: prompt, len(prompt), "prompt")
        else:
            prompt_ids = list(prompt)
        vocab = _vocab_size(tokenizer)
        if vocab is not None and any(not 0 <= t < vocab for t in prompt_ids):
            raise _APIError(400, f"'prompt': token ids must lie in [0, {vocab})", param="prompt")
        handle = await start(prompt_ids, body.token_limit(), body, "prompt")
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return await respond(request, handle, _Completion(False, model_name), body.stream, include_usage)

    return app


_GONE = object()  # event a disconnect watcher posts to end its request's wait


def _chat_prompt(tokenizer: Any, messages: list[dict]) -> str:
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True)


def _vocab_size(tokenizer: Any) -> int | None:
    value = getattr(tokenizer, "vocab_size", None)
    return value if isinstance(value, int) else None


@dataclass
class RunningServer:
    """A server started by ``start_in_thread``; ``stop()`` shuts the HTTP server and the engine thread down.
    Unpacks as ``base_url, stop = start_in_thread(config)``."""

    base_url: str
    host: str
    port: int
    engine: Any
    stop: Callable[[], None]

    def __iter__(self) -> Iterator[Any]:
        return iter((self.base_url, self.stop))


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before the model loads: a taken port is one line (InputError), not a traceback
    after a minute of loading, and the address actually bound is known (``port=0`` picks a free one)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise InputError("host", f"cannot resolve {host!r}: {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise InputError("port", f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def prepare(config: ServerConfig, engine: Any = None, log_level: str = "warning") -> tuple[Any, Any]:
    """Build (or reuse) the engine and the app; returns (app, uvicorn.Config)."""
    import uvicorn

    engine = engine if engine is not None else build_engine(config)
    tokenizer = getattr(engine, "tokenizer", None)
    if tokenizer is None:
        from evals.engine.tokenizer import load_tokenizer

        tokenizer = load_tokenizer()
    app = create_app(config, engine, tokenizer)
    uv_config = uvicorn.Config(app, host=config.host, port=config.port, log_level=log_level, access_log=False,
                               lifespan="off", timeout_graceful_shutdown=max(1, round(config.drain_s)))
    return app, uv_config


def graceful_server(uv_config: Any, app: Any, ready_line: str | None = None) -> Any:
    """A uvicorn server whose shutdown (SIGTERM, SIGINT, ``should_exit``) answers every in-flight request at once
    (a stream's error event, a 503) before uvicorn's drain, and which, stopped by a signal, returns instead of
    re-raising it, so that ``dsa-validate serve`` exits 0 after a clean drain."""
    import uvicorn

    runner: EngineThread = app.state.engine_thread

    class GracefulServer(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started and ready_line:  # uvicorn logs no address for sockets it was handed
                print(ready_line, file=sys.stderr, flush=True)

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            runner.begin_close()  # new requests: 503 shutting_down
            runner.fail_live(SHUTTING_DOWN)  # in-flight ones: answered now, not after the step in progress
            await super().shutdown(sockets)
            app.state.tokenizing.shutdown(wait=False, cancel_futures=True)

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            handled = (signal.SIGINT, signal.SIGTERM)
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return GracefulServer(uv_config)


def start_in_thread(config: ServerConfig, engine: Any = None, timeout_s: float = 60.0) -> RunningServer:
    """Serve in this process on a daemon thread (``port=0``: a free port); returns once it accepts connections."""
    sock = bind(config.host, config.port)
    try:
        app, uv_config = prepare(config, engine)
    except BaseException:
        sock.close()
        raise
    runner: EngineThread = app.state.engine_thread
    server = graceful_server(uv_config, app)
    runner.start()
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="dsa-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            runner.close()
            sock.close()
            raise RuntimeError(f"the server did not start on {config.host}:{config.port}")
        time.sleep(0.02)
    host, port = sock.getsockname()[:2]

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=config.drain_s + 10)
        runner.close()
        sock.close()

    url_host = f"[{host}]" if ":" in host else host
    return RunningServer(f"http://{url_host}:{port}/v1", host, port, runner.engine, stop)


def serve_forever(config: ServerConfig) -> None:
    """Run in the foreground until SIGTERM or Ctrl+C (``dsa-validate serve``); prints ``listening on URL`` once
    ready; returns after the drain (the engine thread gets ``drain_s`` more to finish a step in progress)."""
    sock = bind(config.host, config.port)
    host, port = sock.getsockname()[:2]
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}/v1"
    try:
        app, uv_config = prepare(config)
        runner: EngineThread = app.state.engine_thread
        runner.start()
        try:
            graceful_server(uv_config, app, f"listening on {url} (Ctrl+C or SIGTERM stops)").run(sockets=[sock])
        finally:
            runner.close(timeout_s=config.drain_s)
    finally:
        sock.close()
