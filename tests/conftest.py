"""Fixtures shared by every test: the real servers, isolated per test."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterator

import pytest

from .databases import database, postgres, sqlite  # noqa: F401 - fixtures, registered by import
from .redis_server import RedisServer
from .settings import DATABASE_URL, REDIS_URL, REQUIRE_SERVICES

__all__ = ["DATABASE_URL", "REDIS_URL", "REQUIRE_SERVICES"]


@functools.cache
def _redis_problem() -> str | None:
    try:
        import redis
    except ImportError:
        return "redis-py is not installed (pip install 'freshcache[redis]')"
    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
        client.ping()
        client.close()
    except Exception as exc:
        return f"Redis at {REDIS_URL} does not answer: {exc}"
    return None


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The test Redis URL; skips (or fails, with FRESHCACHE_REQUIRE_SERVICES=1) when down."""
    problem = _redis_problem()
    if problem is not None:
        if REQUIRE_SERVICES:
            pytest.fail(f"{problem}, and FRESHCACHE_REQUIRE_SERVICES=1")
        pytest.skip(problem)
    return REDIS_URL


@pytest.fixture
def namespace(request: pytest.FixtureRequest) -> Iterator[str]:
    """A Redis namespace of this test's own; its keys are deleted afterwards."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    yield name
    if _redis_problem() is None:
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        names = list(client.scan_iter(match=f"{{{name}}}:*", count=1000))
        for start in range(0, len(names), 1000):
            client.unlink(*names[start : start + 1000])
        client.close()


@pytest.fixture(params=["memory", "redis"])
def cache_url(request: pytest.FixtureRequest) -> str:
    """Each cache test runs on the memory backend and on the real Redis."""
    if request.param == "memory":
        return "memory://"
    url: str = request.getfixturevalue("redis_url")
    ns: str = request.getfixturevalue("namespace")
    return f"{url}?namespace={ns}"


@pytest.fixture
def private_redis(redis_url: str) -> Iterator[RedisServer]:
    """A redis-server of this test's own, which the test may stop and start; removed afterwards.

    Persistent, so that data written before a stop is there after the start, as after a
    network partition: the case where stale entries could come back.
    """
    server = RedisServer(persistent=True)
    server.start()
    try:
        yield server
    finally:
        server.remove()
