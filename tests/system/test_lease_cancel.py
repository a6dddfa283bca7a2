"""A load that stops, by cancellation or by failure, gives its lease back: no caller anywhere waits lease_ttl for it."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Sequence
from typing import Any

import pytest
import redis

from freshcache import AsyncCache, Cache, FillTicket
from freshcache._async.backends.redis import AsyncRedisBackend
from freshcache._sync.backends.redis import RedisBackend

from ..redis_server import RedisServer

# Long enough that a lease nobody releases shows: the next caller waits lease_wait, gives up
# and loads without filling (lease_timeouts), where a released lease lets it fill at once.
LEASE = {"lease_ttl": 30, "lease_wait": 5}


def scripts_run(server: RedisServer) -> int:
    """How many scripts the server has run: proves a cancelled command ran all the same."""
    client = redis.Redis(port=server.port)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return sum(
        int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval")
    )


class PausedAtBeginFill(AsyncRedisBackend):
    """Pauses the server (SIGSTOP) just before sending begin_fill, so the call hangs in flight."""

    server: RedisServer | None = None

    async def begin_fill(
        self, key: str, tags: Sequence[str], *, token: str, lease_ttl: float | None
    ) -> FillTicket:
        if self.server is not None:
            assert self.server.process is not None
            os.kill(self.server.process.pid, signal.SIGSTOP)
        return await super().begin_fill(key, tags, token=token, lease_ttl=lease_ttl)


@pytest.mark.slow
async def test_cancelled_during_begin_fill_releases_the_lease(private_redis: RedisServer) -> None:
    """A get_or_load cancelled (a request timeout) while its begin_fill hangs on a paused server leaves no lease behind once the server answers."""
    backend = PausedAtBeginFill.from_url(private_redis.url, socket_timeout=10)
    assert isinstance(backend, PausedAtBeginFill)
    cache = AsyncCache(backend, **LEASE)
    assert private_redis.process is not None
    # A first load, so that the scripts are on the server: the cancelled call sends its
    # EVALSHA alone, with no NOSCRIPT round trip to lose with the connection.
    assert "warm" == await cache.get_or_load("warm", lambda: "warm", tags=["warm"])
    backend.server = private_redis
    scripts_before = scripts_run(private_redis)
    try:
        with pytest.raises(TimeoutError):
            # The request's deadline: begin_fill is sent, the server does not answer.
            await asyncio.wait_for(
                cache.get_or_load("user:1", lambda: "first", tags=["user:1"]), 0.5
            )
    finally:
        os.kill(private_redis.process.pid, signal.SIGCONT)
    await cache.aclose()  # lets the release sent in the background land
    assert scripts_run(private_redis) >= scripts_before + 1  # the cancelled begin_fill ran

    other = AsyncCache.from_url(private_redis.url, **LEASE)  # another process's cache
    try:
        assert "second" == await other.get_or_load("user:1", lambda: "second", tags=["user:1"])
        assert (1, 0, 0) == (
            other.metrics.sets,
            other.metrics.lease_waits,
            other.metrics.lease_timeouts,
        )
    finally:
        await other.aclose()


async def test_cancelled_while_loading_releases_the_lease(redis_url: str, namespace: str) -> None:
    """A get_or_load cancelled while its loader runs gives the lease back: another caller fills at once."""
    url = f"{redis_url}?namespace={namespace}"
    cache = AsyncCache.from_url(url, **LEASE)
    loading = asyncio.Event()

    async def endless() -> str:
        loading.set()
        await asyncio.Event().wait()
        raise AssertionError("never set")

    task = asyncio.create_task(cache.get_or_load("user:1", endless, tags=["user:1"]))
    await loading.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await cache.aclose()

    other = AsyncCache.from_url(url, **LEASE)
    try:
        assert "second" == await other.get_or_load("user:1", lambda: "second", tags=["user:1"])
        assert (1, 0, 0) == (
            other.metrics.sets,
            other.metrics.lease_waits,
            other.metrics.lease_timeouts,
        )
    finally:
        await other.aclose()


class FillInterrupted(RedisBackend):
    """A fill interrupted before it is sent (KeyboardInterrupt, SystemExit in a worker thread)."""

    def fill(
        self,
        key: str,
        value: Any,
        tags: Sequence[str],
        versions: Sequence[str],
        *,
        ttl: float,
        token: str | None,
    ) -> bool:
        raise KeyboardInterrupt


def test_a_thread_interrupted_in_fill_releases_the_lease(redis_url: str, namespace: str) -> None:
    """A thread whose fill is interrupted gives the lease back: another thread's caller fills at once."""
    url = f"{redis_url}?namespace={namespace}"
    interrupted = Cache(FillInterrupted.from_url(url), **LEASE)
    outcome: list[BaseException] = []

    def worker() -> None:
        try:
            interrupted.get_or_load("user:1", lambda: "first", tags=["user:1"])
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    interrupted.close()
    assert [KeyboardInterrupt] == [type(exc) for exc in outcome]

    other = Cache.from_url(url, **LEASE)
    try:
        assert "second" == other.get_or_load("user:1", lambda: "second", tags=["user:1"])
        assert (1, 0, 0) == (
            other.metrics.sets,
            other.metrics.lease_waits,
            other.metrics.lease_timeouts,
        )
    finally:
        other.close()
