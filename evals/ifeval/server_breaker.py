"""Which server the next request goes to, and when a failing server is set aside and comes back.

Why: a nightly run must survive a restarted server (30 s of refused connections) or a burst of errors.
Setting a failing server aside for good turned one restart of the only server into a run where every
pending prompt failed at once ("no server left").

How: a circuit breaker per server. ``set_aside_after`` failures in a row open it: the server is set aside
for a cool-down that doubles on each failed probe, starting at ``backoff_s`` and capped by the request
timeout. When the cool-down is over, one request (a real prompt: the same path the answers take) goes to
it as a half-open probe while the others keep away; an answer closes the breaker, a failure opens it again
for the next cool-down. Only ``max_probes`` failed probes in a row drop a server for good, so while
attempts remain the last server is never dropped: prompts wait for it instead of failing. A failed probe
counts against the server, not against the prompt it carried (that prompt was sent to a server known to
be failing). ``wait`` lets a worker sleep until a server can be asked, woken by the next probe's outcome.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Server:
    """One base URL, its breaker, and what happened to it (its connections live with the workers)."""

    url: str
    outstanding: int = 0
    consecutive_failures: int = 0
    set_aside: str | None = None  # why it was set aside (None: in use)
    retry_at: float = 0.0  # monotonic time the cool-down ends
    probing: bool = False  # a half-open probe is in flight
    failed_probes: int = 0  # in a row, since it was last set aside
    dropped: bool = False  # for good: max_probes probes failed in a row
    times_set_aside: int = 0
    came_back: int = 0
    requests: int = 0
    answers: int = 0
    errors: Counter[str] = field(default_factory=Counter)

    def report(self) -> dict[str, Any]:
        return {"url": self.url, "requests": self.requests, "answers": self.answers,
                "errors": dict(sorted(self.errors.items())), "set_aside": self.set_aside,
                "times_set_aside": self.times_set_aside, "came_back": self.came_back, "dropped": self.dropped}


@dataclass(frozen=True)
class Pick:
    """The server chosen for one request, and whether the request is its half-open probe."""

    index: int
    probe: bool


class ServerPool:
    """The servers of one run and their breakers (one event loop; no locks needed)."""

    def __init__(self, urls: list[str], *, set_aside_after: int, backoff_s: float, max_cool_down_s: float,
                 max_probes: int) -> None:
        self.servers = [Server(url) for url in urls]
        self.set_aside_after = set_aside_after
        self.backoff_s = backoff_s
        self.max_cool_down_s = max_cool_down_s
        self.max_probes = max_probes
        self._changed = asyncio.Event()

    def pick(self) -> Pick | None:
        """A set-aside server whose cool-down is over gets the next request as its probe; else the healthy
        server with the fewest outstanding requests; None when no server can be asked now."""
        now = time.monotonic()
        for index, server in enumerate(self.servers):
            if server.set_aside and not server.dropped and not server.probing and now >= server.retry_at:
                server.probing = True
                return Pick(index, probe=True)
        healthy = [i for i, s in enumerate(self.servers) if s.set_aside is None]
        if not healthy:
            return None
        return Pick(min(healthy, key=lambda i: self.servers[i].outstanding), probe=False)

    def exhausted(self) -> bool:
        """Every server dropped for good: nothing left to wait for."""
        return all(s.dropped for s in self.servers)

    async def wait(self) -> None:
        """Sleep until a cool-down ends or a probe's outcome is known, whichever comes first."""
        waiting = [s.retry_at for s in self.servers if s.set_aside and not s.dropped and not s.probing]
        delay = max(0.0, min(waiting) - time.monotonic()) if waiting else None
        event = self._changed
        try:
            await asyncio.wait_for(event.wait(), timeout=delay)
        except asyncio.TimeoutError:
            pass

    def answered(self, pick: Pick) -> None:
        server = self.servers[pick.index]
        server.consecutive_failures = 0
        server.answers += 1
        if pick.probe:
            server.probing = False
            server.set_aside, server.failed_probes = None, 0
            server.came_back += 1
            self._notify()

    def failed(self, pick: Pick, kind: str) -> None:
        """Count one failed request; open the breaker (again) when it must."""
        server = self.servers[pick.index]
        server.errors[kind] += 1
        if pick.probe:
            server.probing = False
            server.failed_probes += 1
            if server.failed_probes >= self.max_probes:
                server.dropped = True
                server.set_aside = f"{server.set_aside}; dropped after {server.failed_probes} failed probes"
            else:
                server.retry_at = time.monotonic() + self._cool_down(server.failed_probes)
            self._notify()
            return
        if kind == "429":  # the server asked for patience, it is not failing
            return
        server.consecutive_failures += 1
        if server.consecutive_failures >= self.set_aside_after and server.set_aside is None:
            server.set_aside = f"{server.consecutive_failures} consecutive failures, last: {kind}"
            server.times_set_aside += 1
            server.retry_at = time.monotonic() + self._cool_down(0)

    def _cool_down(self, failed_probes: int) -> float:
        return min(self.max_cool_down_s, self.backoff_s * 2 ** failed_probes)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
