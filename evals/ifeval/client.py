"""``dsa-validate ifeval run``: ask served models the IFEval prompts, keep every answer, score them.

Why: nightly, DeepSeek-V3.2 served by FastDeploy's OpenAI-compatible server (often several servers)
answers the 541 prompts before and after a change; a failure on the way (a 429, a restarted server, a
dropped connection, a killed runner) must neither lose answers nor silently drop prompts.

How: ``httpx``'s async client speaking the OpenAI wire format (``openai``'s client adds about 1 ms of
CPU per request in request building and response validation, half the runner's budget, and its
retries would have to be switched off anyway so that every retry is ours to count by kind and may go
to another server). At most ``concurrency`` requests are in flight, one per worker, each worker
holding one connection per server (a shared pool's bookkeeping grows with its size); each request
goes to the healthy server with the fewest outstanding requests. 429 waits for the server's
``Retry-After`` (``retry-after-ms`` too); 5xx, timeouts, dropped connections, malformed JSON and
empty choices back off exponentially; a server that fails ``set_aside_after`` times in a row is
set aside and comes back after a cool-down (``server_breaker.py``: a half-open probe, the cool-down doubling
up to the request timeout; only ``max_attempts`` failed probes in a row drop it), so a restarted server or a
burst of errors does not end the run. A stream that ends
without a ``finish_reason`` (cut by the server, e.g. llama-cpp-python's when a new request arrives) and a
choice without one are not answers: retried, then counted as failed, never stored. Each answer is
appended to the store (``store.py``) the moment it arrives; ``resume`` asks only what the store lacks.
Reasoning (FastDeploy's ``reasoning_content``, or a ``<think>...</think>`` block) is kept apart and never
scored.
The API key is read from the environment variable named by ``api_key_env`` and written nowhere.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import platform
import random
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from evals.ifeval.server_breaker import ServerPool
from evals.ifeval.store import Store, read_answers, write_json_atomic
from validation.errors import InputError, MissingDependency
from validation.termination import run_async, sigterm_raises

RUN_JSON = "run.json"
SCORES_JSON = "scores.json"
# settings that must match when a run is resumed (they change what the model is asked)
RESUME_MUST_MATCH = ("model", "mode", "max_tokens", "temperature", "seed", "system_prompt", "extra_body")
MAX_RETRY_AFTER_S = 600.0  # a longer Retry-After is taken as this long
RETRYABLE = ("429", "5xx", "timeout", "connection", "malformed", "empty_choices", "unfinished")


@dataclass
class Settings:
    """Everything that decides what is asked and how; stored in run.json (never the key itself)."""

    base_urls: list[str]
    model: str
    out: str
    data: str | None = None
    mode: str = "chat"  # "chat" (/v1/chat/completions) or "completions" (/v1/completions)
    concurrency: int = 32
    max_tokens: int | None = None
    temperature: float = 0.0
    seed: int | None = None
    api_key_env: str | None = None
    system_prompt: str | None = None
    extra_body: dict[str, Any] | None = None
    limit: int | None = None
    resume: bool = False
    stream: bool = False
    timeout_s: float = 600.0
    max_attempts: int = 6
    backoff_s: float = 1.0  # first back-off; doubles per attempt, capped at max_backoff_s
    max_backoff_s: float = 30.0
    set_aside_after: int = 5  # consecutive failures that set a server aside (until a probe succeeds)
    progress: bool = True


class AttemptError(Exception):
    """One failed request: its kind (a RETRYABLE entry or ``http_<status>``) and a short message."""

    def __init__(self, kind: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after


@dataclass
class Outcome:
    """What the run did: counts for the report and run.json."""

    asked: int = 0
    answered: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)
    retries: Counter[str] = field(default_factory=Counter)  # retried attempts, by kind
    errors: Counter[str] = field(default_factory=Counter)  # every failed attempt, by kind
    servers: list[dict[str, Any]] = field(default_factory=list)
    probes_failed: int = 0  # half-open probes of set-aside servers that failed (not counted against prompts)
    busy_seconds: float = 0.0  # sum over requests of time in flight (for the concurrency figure)
    wall_seconds: float = 0.0


def api_key(settings: Settings) -> str:
    """The key from the environment (``api_key_env``), else a placeholder the servers ignore."""
    if not settings.api_key_env:
        return "EMPTY"
    value = os.environ.get(settings.api_key_env)
    if not value:
        raise InputError("--api-key-env", f"environment variable {settings.api_key_env} is not set or empty")
    return value


def split_reasoning(content: str | None, reasoning: str | None) -> tuple[str, str | None]:
    """(text scored, reasoning): a ``<think>...</think>`` block (or text before a lone ``</think>``)
    is reasoning; the server's ``reasoning_content`` field is reasoning too; neither is scored."""
    text = content or ""
    marker = text.find("</think>")
    if marker != -1:
        thought = text[:marker]
        if thought.lstrip().startswith("<think>"):
            thought = thought.lstrip()[len("<think>"):]
        text = text[marker + len("</think>"):].lstrip()
        reasoning = thought.strip() if not reasoning else reasoning + "\n" + thought.strip()
    return text, reasoning


def run(settings: Settings, prompts: list[Any] | None = None) -> dict[str, Any]:
    """Ask every prompt the store lacks, store each answer, score the store; returns the summary.

    ``prompts``: already loaded ``evals.ifeval.data.Prompt`` objects (else loaded from ``settings.data``).
    The summary holds the score report, the outcome counts and the run folder's paths.
    """
    from evals.ifeval import data

    _check(settings)
    key = api_key(settings)
    if prompts is None:
        prompts = data.load_prompts(settings.data)
    if settings.limit is not None:
        prompts = prompts[:settings.limit]
    folder = Path(settings.out)
    store = Store(folder)
    run_json = folder / RUN_JSON
    previous = _previous_run(run_json, settings)
    loaded = store.open()
    try:
        todo = [p for p in prompts if p.key not in loaded.answers]
        meta = _run_meta(settings, previous, loaded, len(prompts), len(todo))
        write_json_atomic(run_json, meta)
        with sigterm_raises():
            outcome = run_async(_ask_all(settings, key, todo, store))
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM  # every answer is on disk as it came: say where, and how to go on
        kept = len(read_answers(store.responses).answers)
        print(f"{kept} of {len(prompts)} prompts answered so far, kept in {store.responses}; finish the run with "
              "the same command and --resume", file=sys.stderr)
        raise
    finally:
        store.close()
    summary = finish(folder, prompts, meta, outcome)
    return summary


def finish(folder: Path, prompts: list[Any], meta: dict[str, Any], outcome: Outcome) -> dict[str, Any]:
    """Score the store's answers, write scores.json and the final run.json; return the summary."""
    from evals.ifeval import scoring
    from evals.ifeval.data import Responses

    answers = read_answers(folder / "responses.jsonl").answers
    wanted = {p.key for p in prompts}
    report = scoring.score(prompts, Responses({k: a["response"] for k, a in answers.items() if k in wanted}, ()))
    (folder / SCORES_JSON).write_text(scoring.to_json(report), encoding="utf-8")
    records = [answers[p.key] for p in prompts if p.key in answers]
    truncated = sorted(r["key"] for r in records if r.get("finish_reason") == "length")
    missing = sorted(wanted - answers.keys())
    run_info = meta["runs"][-1]
    run_info.update({
        "ended": _now(), "asked": outcome.asked, "answered": outcome.answered,
        "failed": [f["key"] for f in outcome.failed], "retries": dict(sorted(outcome.retries.items())),
        "errors": dict(sorted(outcome.errors.items())), "probes_failed": outcome.probes_failed,
        "servers": outcome.servers,
        "wall_seconds": round(outcome.wall_seconds, 3),
        "mean_busy_concurrency": round(outcome.busy_seconds / outcome.wall_seconds, 2) if outcome.wall_seconds else 0,
    })
    meta.update({"ended": run_info["ended"], "metrics": report["metrics"], "answers": len(records),
                 "missing": missing, "truncated": truncated})
    write_json_atomic(folder / RUN_JSON, meta)
    return {"report": report, "outcome": outcome, "truncated": truncated, "missing": missing,
            "run_json": meta, "folder": str(folder)}


def _check(settings: Settings) -> None:
    if not settings.base_urls:
        raise InputError("--base-url", "give at least one server")
    for url in settings.base_urls:
        if not url.startswith(("http://", "https://")):
            raise InputError("--base-url", f"{url!r} is not an http(s) URL")
    if settings.mode not in ("chat", "completions"):
        raise InputError("mode", f"must be chat or completions, got {settings.mode!r}")
    if settings.concurrency < 1:
        raise InputError("--concurrency", "must be at least 1")
    if settings.max_attempts < 1:
        raise InputError("--max-attempts", "must be at least 1")


def _previous_run(run_json: Path, settings: Settings) -> dict[str, Any] | None:
    """The folder's run.json when resuming (settings must match); an error when not resuming."""
    folder = run_json.parent
    holds_run = run_json.is_file() or (folder / "responses.jsonl").is_file()
    if not settings.resume:
        if holds_run:
            raise InputError("--out", f"{folder} already holds a run: pass --resume to continue it, "
                             "or choose another folder")
        return None
    if not run_json.is_file():
        return None
    try:
        previous = json.loads(run_json.read_text(encoding="utf-8"))
        before = previous["settings"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise InputError(str(run_json), "not a run.json written by dsa-validate ifeval run") from None
    now = _public_settings(settings)
    for name in RESUME_MUST_MATCH:
        if before.get(name) != now.get(name):
            raise InputError("--resume", f"{name} was {before.get(name)!r} in {run_json}, now {now.get(name)!r}: "
                             "a resumed run must ask the same question")
    return previous


def _public_settings(settings: Settings) -> dict[str, Any]:
    public = asdict(settings)
    public.pop("progress")
    return public


def _run_meta(settings: Settings, previous: dict[str, Any] | None, loaded: Any, total: int,
              todo: int) -> dict[str, Any]:
    meta = previous or {"started": _now(), "runs": []}
    meta["settings"] = _public_settings(settings)
    meta["model"] = settings.model
    meta["servers"] = list(settings.base_urls)
    meta["versions"] = _versions()
    meta["prompts"] = total
    meta["ended"] = None
    meta["runs"].append({"started": _now(), "already_answered": total - todo, "to_ask": todo,
                         "torn_bytes_cut": loaded.torn_bytes, "duplicate_lines_ignored": loaded.duplicates,
                         "servers": []})
    return meta


def _versions() -> dict[str, str]:
    from importlib import metadata

    found = {"python": platform.python_version()}
    for name in ("dsa-validation", "httpx"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _httpx() -> Any:
    try:
        import httpx
    except ImportError as exc:
        raise MissingDependency("httpx", "runner", "Asking served models") from exc
    return httpx


def _tls_context() -> Any:
    """One TLS context for every client (httpx builds one per client otherwise: ~0.1 s each, loaded)."""
    import ssl

    try:
        import certifi
    except ImportError:
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=certifi.where())


def _connections(settings: Settings, key: str, urls: list[str], tls: Any) -> list[Any]:
    """One single-connection client per server, for one worker."""
    httpx = _httpx()
    timeout = httpx.Timeout(settings.timeout_s, connect=min(settings.timeout_s, 30.0))
    headers = {"Authorization": f"Bearer {key}"}
    return [httpx.AsyncClient(base_url=url.rstrip("/") + "/", headers=headers, timeout=timeout, verify=tls,
                              limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))
            for url in urls]


async def _ask_all(settings: Settings, key: str, todo: list[Any], store: Store) -> Outcome:
    outcome = Outcome(asked=len(todo))
    pool = ServerPool(settings.base_urls, set_aside_after=settings.set_aside_after, backoff_s=settings.backoff_s,
                      max_cool_down_s=settings.timeout_s, max_probes=settings.max_attempts)
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dsa-store")  # one writer keeps lines whole
    queue: asyncio.Queue[Any] = asyncio.Queue()
    for prompt in todo:
        queue.put_nowait(prompt)
    bar = _progress(settings, len(todo))
    loop = asyncio.get_running_loop()
    start = time.monotonic()

    pending: set[asyncio.Future[None]] = set()

    def stored(future: asyncio.Future[None], answered: bool) -> None:
        pending.discard(future)
        if future.exception() is None:
            if answered:
                outcome.answered += 1
            if bar is not None:
                if outcome.errors:  # failed attempts so far, by kind, beside the bar
                    bar.set_postfix_str(", ".join(f"{k} {v}" for k, v in sorted(outcome.errors.items())),
                                        refresh=False)
                bar.update(1)

    tls = _tls_context()

    async def worker() -> None:
        clients = _connections(settings, key, settings.base_urls, tls)
        try:
            while True:
                try:
                    prompt = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                record, failure = await _ask_one(settings, pool, clients, prompt, outcome, key)
                if record is None:
                    outcome.failed.append(failure)
                # synced by the writer thread while this worker asks its next prompt; a prompt counts
                # as answered once its line is on disk
                future = loop.run_in_executor(writer, store.append_answer if record else store.append_failure,
                                              record or failure)
                pending.add(future)
                future.add_done_callback(lambda f, answered=record is not None: stored(f, answered))
        finally:
            for client in clients:
                await client.aclose()

    try:
        await asyncio.gather(*(worker() for _ in range(min(settings.concurrency, max(1, len(todo))))))
        outcome.wall_seconds = time.monotonic() - start
        if pending:
            await asyncio.gather(*pending)
    finally:
        writer.shutdown(wait=True)
        if bar is not None:
            bar.close()
    outcome.servers = [s.report() for s in pool.servers]
    return outcome


def _progress(settings: Settings, total: int) -> Any:
    if not settings.progress:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, file=sys.stderr, unit="prompt", desc="ifeval", dynamic_ncols=True)


async def _ask_one(settings: Settings, pool: ServerPool, clients: list[Any], prompt: Any,
                   outcome: Outcome, key: str) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """Ask one prompt until it is answered or out of attempts; (record, None) or (None, failure).

    While no server can be asked (all set aside, cooling down) the prompt waits without spending attempts."""
    errors: list[str] = []
    attempt = 0
    while attempt < settings.max_attempts:
        pick = pool.pick()
        if pick is None:
            if pool.exhausted():
                errors.append("no server left (every server dropped after failed probes)")
                break
            await pool.wait()
            continue
        server = pool.servers[pick.index]
        server.outstanding += 1
        server.requests += 1
        sent = time.monotonic()
        try:
            record = await _request(settings, clients[pick.index], prompt)
        except AttemptError as exc:
            outcome.busy_seconds += time.monotonic() - sent
            server.outstanding -= 1
            pool.failed(pick, exc.kind)
            outcome.errors[exc.kind] += 1
            if pick.probe and exc.kind in RETRYABLE:  # the server's failure, known: the prompt keeps its attempts
                outcome.probes_failed += 1
                continue
            attempt += 1
            errors.append(f"{server.url}: {exc.kind}: {_redact(str(exc), key)}")
            if exc.kind not in RETRYABLE or attempt == settings.max_attempts:
                break
            outcome.retries[exc.kind] += 1
            await asyncio.sleep(_delay(settings, attempt, exc.retry_after))
            continue
        latency = time.monotonic() - sent
        outcome.busy_seconds += latency
        server.outstanding -= 1
        pool.answered(pick)
        record.update({"latency_s": round(latency, 4), "server": server.url, "attempts": attempt + 1})
        return record, {}
    return None, {"key": prompt.key, "prompt": prompt.prompt, "attempts": len(errors), "errors": errors,
                  "at": _now()}


def _delay(settings: Settings, attempt: int, retry_after: float | None) -> float:
    if retry_after is not None:  # the server's word, within reason
        return min(max(retry_after, 0.0), MAX_RETRY_AFTER_S)
    base = min(settings.max_backoff_s, settings.backoff_s * 2 ** (attempt - 1))
    return base * (0.75 + 0.5 * random.random())  # jitter: retries of many prompts do not arrive together


def _retry_after(headers: Any) -> float | None:
    """Seconds a 429 asks us to wait: ``retry-after-ms``, else ``Retry-After`` (seconds or a date)."""
    if headers is None:
        return None
    value = headers.get("retry-after-ms")
    if value:
        try:
            return float(value) / 1000.0
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return None if parsed is None else (parsed - datetime.now(parsed.tzinfo)).total_seconds()


def _redact(text: str, key: str) -> str:
    return text.replace(key, "***") if key and key != "EMPTY" else text


async def _request(settings: Settings, client: Any, prompt: Any) -> dict[str, Any]:
    """One request; the answer's record, or AttemptError naming what went wrong."""
    httpx = _httpx()
    body: dict[str, Any] = {"model": settings.model, "temperature": settings.temperature}
    if settings.mode == "chat":
        path = "chat/completions"
        body["messages"] = [{"role": "user", "content": prompt.prompt}]
        if settings.system_prompt:
            body["messages"].insert(0, {"role": "system", "content": settings.system_prompt})
    else:
        path = "completions"
        body["prompt"] = prompt.prompt
    if settings.max_tokens is not None:
        body["max_tokens"] = settings.max_tokens
    if settings.seed is not None:
        body["seed"] = settings.seed
    if settings.stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    if settings.extra_body:
        body.update(settings.extra_body)
    try:
        if settings.stream:
            async with client.stream("POST", path, json=body) as reply:
                if reply.status_code != 200:
                    await reply.aread()
                    _raise_for_status(reply)
                content, reasoning, finish, usage = await _gather_stream(reply, settings.mode)
        else:
            reply = await client.post(path, json=body)
            _raise_for_status(reply)
            content, reasoning, finish, usage = _unpack(json.loads(reply.content), settings.mode)
    except httpx.TimeoutException:
        raise AttemptError("timeout", f"no answer within {settings.timeout_s} s") from None
    except httpx.TransportError as exc:  # refused, reset, cut mid-body
        raise AttemptError("connection", _short(f"{type(exc).__name__}: {exc}")) from None
    except (ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
        raise AttemptError("malformed", _short(f"unreadable response: {type(exc).__name__}: {exc}")) from None
    text, reasoning = split_reasoning(content, reasoning)
    return {"key": prompt.key, "prompt": prompt.prompt, "response": text, "reasoning": reasoning,
            "finish_reason": finish, "usage": usage}


def _raise_for_status(reply: Any) -> None:
    status = reply.status_code
    if status == 200:
        return
    if status == 429:
        raise AttemptError("429", "rate limited", _retry_after(reply.headers))
    if status == 408:
        raise AttemptError("timeout", "HTTP 408 from the server")
    kind = "5xx" if status >= 500 else f"http_{status}"
    raise AttemptError(kind, f"HTTP {status}: {_short(reply.text)}")


def _unpack(payload: Any, mode: str) -> tuple[str | None, str | None, str | None, dict[str, Any] | None]:
    """(content, reasoning, finish_reason, usage) of a non-streamed response body."""
    if not isinstance(payload, dict) or not isinstance(payload.get("choices"), list):
        raise ValueError("no choices list in the response")
    if not payload["choices"]:
        raise AttemptError("empty_choices", "the response has no choices")
    choice = payload["choices"][0]
    part = choice["message"] if mode == "chat" else choice
    content = part.get("content") if mode == "chat" else part.get("text")
    if content is not None and not isinstance(content, str):
        raise TypeError("content is not a string")
    if not choice.get("finish_reason"):
        raise AttemptError("unfinished", "the choice has no finish_reason (an answer the server did not finish)")
    return content, part.get("reasoning_content"), choice.get("finish_reason"), payload.get("usage")


async def _gather_stream(reply: Any, mode: str) -> tuple[str, str | None, str | None, dict[str, Any] | None]:
    """Join a server-sent-event stream of chunks (``data: {...}`` lines up to ``data: [DONE]``); a stream
    that ends without a ``finish_reason`` was cut and is no answer."""
    content: list[str] = []
    thoughts: list[str] = []
    finish = None
    usage = None
    chunks = 0
    async for line in reply.aiter_lines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            break
        chunk = json.loads(data)
        chunks += 1
        if chunk.get("usage"):
            usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            part = (choice.get("delta") or {}) if mode == "chat" else choice
            piece = part.get("content") if mode == "chat" else part.get("text")
            if piece:
                content.append(piece)
            if part.get("reasoning_content"):
                thoughts.append(part["reasoning_content"])
            if choice.get("finish_reason"):
                finish = choice["finish_reason"]
    if finish is None:  # cut: [DONE] or the end of the body came before the last chunk
        raise AttemptError("unfinished", f"the stream ended after {chunks} chunks and {sum(map(len, content))} "
                           "characters without a finish_reason")
    return "".join(content), "".join(thoughts) or None, finish, usage


def _short(text: str) -> str:
    return " ".join(str(text).split())[:200]
