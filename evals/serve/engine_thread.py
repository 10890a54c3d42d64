"""One thread that owns the engine, bridging it to asyncio request handlers (continuous batching).

The engine is not thread-safe, so every call into it (add_request, step, abort) happens on this thread. Handlers
post commands; the thread drains them between steps and loops ``engine.step()`` while any request is unfinished, so
requests that arrive while others run join the next step's batch. Each request's results go to its own
``asyncio.Queue`` through ``loop.call_soon_threadsafe``. Token ids become text here (``IncrementalText``), so a stop
string ends a request in the same step it appears and its blocks are freed at once.

Failures never hang a client: a request the engine refuses gets the exception back from ``submit``; a step that
raises ends every running request with a ``Failure`` event and aborts it in the engine.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from evals.serve.detokenize import IncrementalText

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delta:
    """New text of one request; ``finish_reason`` is set on its last delta ("stop" or "length")."""

    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Failure:
    """The engine failed while running this request, or the server is shutting down; it has been aborted.
    ``code`` is the OpenAI error code the client gets (``engine_error`` is a 500, ``shutting_down`` a 503)."""

    message: str
    code: str = "engine_error"


SHUTTING_DOWN = Failure("the server is shutting down", "shutting_down")


@dataclass(eq=False)
class RequestHandle:
    """A request in flight: its events arrive on ``events``; ``done`` once finished, failed or aborted."""

    prompt_ids: list[int]
    max_tokens: int
    stop: tuple[str, ...]
    seed: int | None
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    request_id: Any = None
    done: bool = False


class EngineThread:
    """Runs ``engine`` on a daemon thread; ``submit``/``abort`` are safe to call from the event loop."""

    def __init__(self, engine: Any, decode: Callable[[list[int]], str], stop_token_ids: Sequence[int]) -> None:
        self.engine = engine
        self._decode = decode
        self._stop_token_ids = list(stop_token_ids)
        self._commands: deque[tuple[str, Any]] = deque()
        self._wake = threading.Condition()
        self._running: dict[Any, tuple[RequestHandle, asyncio.AbstractEventLoop, IncrementalText]] = {}
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="dsa-engine", daemon=True)
        self._live: set[RequestHandle] = set()  # submitted and not yet given up by their handler (event loop only)
        self.steps = 0

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout_s: float | None = None) -> None:
        """Stop the thread; requests still running end with a Failure event. Waits up to ``timeout_s`` for a step
        in progress (None: for ever)."""
        self.begin_close()
        self._thread.join(timeout_s)

    def begin_close(self) -> None:
        """Refuse new requests (``submit`` raises RuntimeError) and let the thread stop after its current step."""
        with self._wake:
            self._closing = True
            self._wake.notify()

    def fail_live(self, failure: Failure) -> int:
        """End every request a handler still waits on with ``failure`` now, without waiting for a step in progress
        (event loop only: a graceful shutdown answers in-flight clients at once). Returns how many."""
        live, self._live = self._live, set()
        for handle in live:
            if not handle.done:
                handle.done = True
                handle.events.put_nowait(failure)
        return len(live)

    async def submit(self, handle: RequestHandle) -> RequestHandle:
        """Add ``handle`` to the engine; raises what ``engine.add_request`` raised (QueueFull, ValueError)."""
        loop = asyncio.get_running_loop()
        accepted = loop.create_future()
        self._post("add", (handle, loop, accepted))
        await accepted
        self._live.add(handle)
        return handle

    def abort(self, handle: RequestHandle) -> None:
        """Free ``handle``'s engine state (client gone, or its handler is done with it); safe to call twice."""
        self._live.discard(handle)
        if handle.done:
            return
        handle.done = True
        try:
            self._post("abort", handle)
        except RuntimeError:  # shutting down: the thread aborts every request it still runs when it stops
            pass

    def _post(self, kind: str, payload: Any) -> None:
        with self._wake:
            if self._closing:
                raise RuntimeError("the server is shutting down")
            self._commands.append((kind, payload))
            self._wake.notify()

    # ---- engine thread -------------------------------------------------------------------------------------------

    def _loop(self) -> None:
        from evals.engine.engine import SamplingParams

        while True:
            with self._wake:
                while not self._commands and not self._closing and not self.engine.has_unfinished():
                    self._wake.wait()
                if self._closing:
                    break
                commands = list(self._commands)
                self._commands.clear()
            try:
                for kind, payload in commands:
                    if kind == "add":
                        self._add(SamplingParams, *payload)
                    else:
                        self._abort(payload)
                if self.engine.has_unfinished():
                    self._step()
            except Exception as exc:  # never let the thread die with clients waiting on it
                _log.exception("engine thread error")
                self._fail_all(Failure(f"engine error: {type(exc).__name__}: {exc}"))
        self._fail_all(SHUTTING_DOWN)
        for kind, payload in self._commands:
            if kind == "add":
                _, loop, accepted = payload
                loop.call_soon_threadsafe(_settle, accepted, RuntimeError("the server is shutting down"))

    def _add(self, sampling_params: type, handle: RequestHandle, loop: asyncio.AbstractEventLoop,
             accepted: asyncio.Future) -> None:
        params = sampling_params(max_tokens=handle.max_tokens, stop_token_ids=self._stop_token_ids, seed=handle.seed)
        try:
            handle.request_id = self.engine.add_request(list(handle.prompt_ids), params)
        except Exception as exc:  # QueueFull, ValueError: the handler turns them into 503 / 400
            handle.done = True
            loop.call_soon_threadsafe(_settle, accepted, exc)
            return
        self._running[handle.request_id] = (handle, loop, IncrementalText(self._decode, handle.stop))
        loop.call_soon_threadsafe(_settle, accepted, None)

    def _abort(self, handle: RequestHandle) -> None:
        if self._running.pop(handle.request_id, None) is not None:
            self.engine.abort(handle.request_id)

    def _step(self) -> None:
        try:
            outputs = self.engine.step()
        except Exception as exc:
            self._fail_all(Failure(f"engine step failed: {type(exc).__name__}: {exc}"))
            return
        self.steps += 1
        for out in outputs:
            entry = self._running.get(out.request_id)
            if entry is None:
                continue
            handle, loop, text = entry
            delta = text.feed(out.new_token_ids, final=out.finished)
            finish = "stop" if text.stopped else (out.finish_reason or "stop") if out.finished else None
            if finish is not None:
                del self._running[out.request_id]
                handle.done = True
                if not out.finished:  # a stop string: end it in the engine now
                    self.engine.abort(out.request_id)
            event = Delta(delta, finish, int(out.prompt_tokens), int(out.completion_tokens))
            loop.call_soon_threadsafe(handle.events.put_nowait, event)

    def _fail_all(self, failure: Failure) -> None:
        running, self._running = self._running, {}
        for request_id, (handle, loop, _) in running.items():
            handle.done = True
            try:
                self.engine.abort(request_id)
            except Exception:  # the engine is already broken; the client still gets its Failure
                pass
            loop.call_soon_threadsafe(handle.events.put_nowait, failure)


def _settle(future: asyncio.Future, exc: BaseException | None) -> None:
    if not future.done():
        future.set_exception(exc) if exc is not None else future.set_result(None)
