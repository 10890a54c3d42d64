"""The fleet database: failures saved to a real Redis server and replayed from it.

CI starts ``redis-server`` on loopback and points ``DSA_TEST_REDIS_URL`` at it (default
redis://127.0.0.1:6399/0); without a reachable server this test is skipped with the reason printed.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from properties import profiles

URL = os.environ.get("DSA_TEST_REDIS_URL", "redis://127.0.0.1:6399/0")


def _server():
    redis = pytest.importorskip("redis", reason="the redis client is not installed (pip install 'dsa-validation[fleet]')")
    client = redis.Redis.from_url(URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as exc:
        pytest.skip(f"no Redis server at {URL} ({exc}); start one: redis-server --port 6399")
    return client


def test_failures_are_shared_through_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    client = _server()
    monkeypatch.setenv(profiles.REDIS_ENV, URL)
    client.flushdb()
    database = profiles.example_database()
    assert type(database).__name__ == "RedisExampleDatabase"
    calls: list[int] = []

    @settings(database=database, max_examples=200, derandomize=False)
    @given(st.integers(0, 10_000))
    def fails_above_5000(x: int) -> None:
        calls.append(x)
        assert x <= 5000

    with pytest.raises(AssertionError):
        fails_above_5000()
    assert client.keys(b"dsa-validation:*"), "the failing example was not saved to Redis"
    calls.clear()
    with pytest.raises(AssertionError):
        fails_above_5000()  # another machine: the saved failure is replayed first
    assert calls[0] > 5000
