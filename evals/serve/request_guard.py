"""The ASGI layer in front of the app: the API key first, then the body's size, before anything is parsed.

Why a raw ASGI middleware: FastAPI reads and parses the whole body before a handler (or a dependency) runs, so a
10 MB prompt was read, decoded and validated (seconds, hundreds of MB) before anyone looked at its size or its key,
and a wrong key got a 400 naming body fields instead of a 401. Here a request to ``/v1/...`` is answered 401 when the
key is wrong, 413 when its ``Content-Length`` is over the limit (without reading a byte of it), and 413 as soon as a
body sent without a length (chunked) passes the limit; the body it lets through is at most ``max_body_bytes``, then
replayed to the app. Every answer is OpenAI's error shape. ``/health`` needs no key.

A refused body is read on and thrown away (up to ``DISCARD_LIMIT_BYTES``, nothing kept) before the 413 goes out:
closing a connection with unread bytes resets it, and a client still sending (httpx, the openai client) would see a
broken connection instead of the error. A client that asked ``Expect: 100-continue`` (curl, for large bodies) has
sent nothing yet and gets its 413 at once.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from evals.serve.openai_protocol import error_body

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DISCARD_LIMIT_BYTES = 256 << 20  # past this, a refused body's connection is closed unread


class RequestGuard:
    """Wraps ``app``: authentication, then the body-size limit, for every HTTP request under ``/v1/``."""

    def __init__(self, app: ASGIApp, *, api_key: str | None, max_body_bytes: int) -> None:
        self.app = app
        self.api_key = api_key
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        refusal = self._refuse_key(scope)
        if refusal is not None:
            await _refuse(scope, receive, send, 401, refusal, 0)
            return
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            await _refuse(scope, receive, send, 413, self._too_large(length), 0)
            return
        body = await self._read_bounded(receive)
        if isinstance(body, int):
            await _refuse(scope, receive, send, 413, self._too_large(None), body)
            return
        await self.app(scope, _replay(body, receive), send)

    def _refuse_key(self, scope: Scope) -> dict | None:
        if self.api_key is None:
            return None
        scheme, _, given = (_header(scope, b"authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not given:
            return error_body("Missing API key: send it as 'Authorization: Bearer <key>'.", code="invalid_api_key")
        if not hmac.compare_digest(given.strip().encode(), self.api_key.encode()):
            return error_body("Incorrect API key provided.", code="invalid_api_key")
        return None

    def _too_large(self, length: str | None) -> dict:
        size = f"{length} bytes" if length is not None and length.isdigit() else "the body"
        return error_body(f"The request body ({size}) is over this server's limit of {self.max_body_bytes} bytes "
                          "(dsa-validate serve --max-body-bytes).", code="request_too_large")

    async def _read_bounded(self, receive: Receive) -> bytes | int:
        """The whole body, or the bytes read so far once it passes the limit (those are dropped)."""
        parts: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: let the app see it
                return b"".join(parts)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return size
            parts.append(chunk)
            if not message.get("more_body", False):
                return b"".join(parts)


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, body: dict, read: int) -> None:
    """Answer ``status`` without parsing the body: its unread rest (``read`` bytes are gone) is thrown away first,
    unless the client waits for ``100 Continue`` and has sent none of it."""
    if (_header(scope, b"expect") or "").lower() != "100-continue":
        await _discard(receive, read)
    await _answer(send, status, body)


async def _discard(receive: Receive, size: int) -> None:
    """Read the rest of a refused body without keeping it, up to ``DISCARD_LIMIT_BYTES`` in all."""
    while size <= DISCARD_LIMIT_BYTES:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return
        size += len(message.get("body", b""))


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the body once, then the real channel (a disconnect arrives there)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _answer(send: Send, status: int, body: dict) -> None:
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": payload})
