"""The core promises under real faults: a lease holder killed mid-load, a Redis server killed."""

from __future__ import annotations

import asyncio
import inspect
import multiprocessing
import os
import signal
import time
from typing import Any

import pytest

from freshcache import AsyncCache, BackendError, Cache

from ..redis_server import RedisServer

SPAWN = multiprocessing.get_context("spawn")
MISS = object()


async def _(result: Any) -> Any:
    """The value of a call on either API: awaited when the cache is an AsyncCache."""
    return await result if inspect.isawaitable(result) else result


# A lease holder killed mid-load


def _load_forever(cache_url: str, started: Any) -> None:
    """Process A: take the lease on "report" and never finish the load."""

    async def main() -> None:
        async with AsyncCache.from_url(cache_url, lease_ttl=1.0) as cache:

            async def never_returns() -> str:
                started.set()
                await asyncio.sleep(3600)
                return "never"

            await cache.get_or_load("report", never_returns, tags=["report"])

    asyncio.run(main())


@pytest.mark.slow
def test_a_killed_lease_holder_is_taken_over_within_the_lease_ttl(
    redis_url: str, namespace: str
) -> None:
    """When the process holding a key's lease is killed mid-load, another caller takes the lease over once it expires, and its own result is served."""
    cache_url = f"{redis_url}?namespace={namespace}"
    lease_ttl = 1.0
    started = SPAWN.Event()
    holder = SPAWN.Process(target=_load_forever, args=(cache_url, started), daemon=True)
    holder.start()
    try:
        assert started.wait(30)
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(10)
        assert -signal.SIGKILL == holder.exitcode

        # lease_wait longer than lease_ttl: waiting ends by take-over, not by giving up.
        with Cache.from_url(cache_url, lease_ttl=lease_ttl, lease_wait=10.0) as cache:
            began = time.monotonic()
            value = cache.get_or_load("report", lambda: "taken over", tags=["report"])
            elapsed = time.monotonic() - began

            assert "taken over" == value
            assert elapsed < lease_ttl + 1.0
            assert 1 == cache.metrics.lease_waits  # the dead holder's lease was still there
            assert 0 == cache.metrics.lease_timeouts
            assert 1 == cache.metrics.sets
            assert "taken over" == cache.get("report", tags=["report"])
    finally:
        if holder.is_alive():
            holder.kill()
        holder.join(5)


# Redis stopped mid-run


@pytest.mark.slow
@pytest.mark.parametrize("api", ["async", "sync"])
async def test_reads_survive_a_redis_outage_and_recover(
    private_redis: RedisServer, api: str
) -> None:
    """While Redis is down get_or_load answers from the loader, quickly and without raising, counting failures and skipped calls; raise_errors=True raises BackendError; once Redis is back the same cache fills and hits again."""
    cache_class = AsyncCache if api == "async" else Cache
    url = f"{private_redis.url}?namespace=outage"
    cache: Any = cache_class.from_url(url, breaker_cooldown=0.05)
    strict: Any = cache_class.from_url(url, raise_errors=True)
    try:
        assert {"v": 1} == await _(cache.get_or_load("user:1", lambda: {"v": 1}, tags=["user:1"]))
        assert {"v": 1} == await _(cache.get("user:1", tags=["user:1"]))
        assert 0 == cache.metrics.backend_errors

        private_redis.stop()

        def failures() -> int:
            return int(cache.metrics.backend_errors + cache.metrics.backend_skips)

        errors = failures()
        for attempt in range(5):
            began = time.monotonic()
            value = await _(
                cache.get_or_load("user:1", lambda n=attempt: {"db": n}, tags=["user:1"])
            )
            elapsed = time.monotonic() - began
            assert {"db": attempt} == value
            assert elapsed < 1.0
            assert failures() > errors
            errors = failures()
        began = time.monotonic()
        assert MISS is await _(cache.get("user:1", MISS, tags=["user:1"]))
        assert time.monotonic() - began < 1.0
        assert errors + 1 == failures()

        began = time.monotonic()
        with pytest.raises(BackendError):
            await _(strict.get_or_load("user:1", lambda: {"db": -1}, tags=["user:1"]))
        assert time.monotonic() - began < 1.0

        private_redis.start()
        # The breaker lets a probe through once its cooldown (doubled by each failed probe) ends.
        deadline = time.monotonic() + 5
        while cache.breaker.is_open and time.monotonic() < deadline:  # noqa: ASYNC110 - waits out a cooldown, bounded
            await asyncio.sleep(0.01)

        # The server kept its data (nothing was invalidated meanwhile): the entry is a hit again.
        assert {"v": 1} == await _(cache.get("user:1", tags=["user:1"]))
        sets = cache.metrics.sets
        assert {"v": 2} == await _(cache.get_or_load("user:2", lambda: {"v": 2}, tags=["user:2"]))
        assert sets + 1 == cache.metrics.sets
        assert {"v": 2} == await _(cache.get("user:2", tags=["user:2"]))
        assert not cache.breaker.open_until
    finally:
        for each in (cache, strict):
            await _(each.aclose() if api == "async" else each.close())


@pytest.mark.slow
def test_a_hung_redis_costs_one_timeout_not_one_per_read(private_redis: RedisServer) -> None:
    """A paused server (SIGSTOP) costs the first read its socket timeout; the next reads skip it and answer from the loader at once, until it resumes."""
    cache = Cache.from_url(private_redis.url, socket_timeout=0.3, retries=0, breaker_cooldown=1.0)
    try:
        cache.set("user:1", "cached", tags=["user:1"])
        assert private_redis.process is not None
        os.kill(private_redis.process.pid, signal.SIGSTOP)
        try:
            began = time.monotonic()
            assert "db" == cache.get_or_load("user:1", lambda: "db", tags=["user:1"])
            first = time.monotonic() - began
            began = time.monotonic()
            for _ in range(20):
                assert "db" == cache.get_or_load("user:1", lambda: "db", tags=["user:1"])
            next_twenty = time.monotonic() - began
        finally:
            os.kill(private_redis.process.pid, signal.SIGCONT)

        assert 0.25 < first < 1.5
        assert next_twenty < 0.1
        # Each skipped get_or_load leaves two operations unsent: the read and the fill's preparation.
        assert (1, 1 + 2 * 20) == (cache.metrics.backend_errors, cache.metrics.backend_skips)
        time.sleep(1.1)  # the cooldown ends: one probe, which succeeds and closes the breaker
        assert "cached" == cache.get("user:1", tags=["user:1"])
        assert not cache.breaker.open_until
    finally:
        cache.close()
