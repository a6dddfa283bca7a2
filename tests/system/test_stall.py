"""A Redis that stalls for a moment (SIGSTOP on a server the test started), then answers again.

A short stall must cost little: the breaker opens once, at its first cooldown, whatever
the number of calls that were in flight; what was queued meanwhile is applied within
about a second of the server answering; a strict write pays one socket timeout, not one
per retry, and its pending marks are released by the retry.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from freshcache import (
    PENDING_VERSION,
    AsyncCache,
    AsyncInvalidationManager,
    AsyncRetryQueue,
    Invalidation,
    Rules,
)

from ..redis_server import RedisServer

RULES = Rules().entity("user", tags=["user:{id}"])


def applied_event(manager: AsyncInvalidationManager) -> asyncio.Event:
    """Set when the manager reports an invalidation applied by its retry queue."""
    event = asyncio.Event()

    def seen(invalidation: Invalidation) -> None:
        if invalidation.source == "retry queue":
            event.set()

    manager.subscribe(seen)
    return event


@pytest.mark.slow
async def test_a_short_stall_opens_the_breaker_once_and_the_queue_drains_within_a_second(
    private_redis: RedisServer,
) -> None:
    """A dozen calls that time out together in a 0.2 s stall leave the breaker at its first cooldown, and once the server answers the queued invalidations are applied and reads hit again within about a second."""
    cache = AsyncCache.from_url(
        f"{private_redis.url}?namespace=stall", socket_timeout=0.05, retries=0
    )
    manager = AsyncInvalidationManager(cache, RULES, retries=0)
    applied = applied_event(manager)
    try:
        for n in range(12):
            assert await cache.set(f"user:{n}", "old", tags=[f"user:{n}"])

        with private_redis.paused():
            outcomes = await asyncio.gather(
                *[manager.invalidate_entity("user", new={"id": n}) for n in range(6)],
                *[
                    cache.get_or_load(f"user:{n}", lambda: "db", tags=[f"user:{n}"])
                    for n in range(6, 12)
                ],
            )
            await asyncio.sleep(0.15)  # the stall itself, not a synchronization
        resumed = time.monotonic()

        assert [False] * 6 == [invalidation.applied for invalidation in outcomes[:6]]
        assert ["db"] * 6 == outcomes[6:]
        assert cache.metrics.backend_errors >= 7  # at least each read and one invalidation
        assert cache.breaker.first_cooldown == cache.breaker.cooldown

        assert await asyncio.wait_for(applied.wait(), 3)
        assert time.monotonic() - resumed < 1.2
        assert 0 == len(manager.failure_sink)
        assert not cache.reads_suspended
        assert [None] * 6 == [await cache.get(f"user:{n}", tags=[f"user:{n}"]) for n in range(6)]
        hits = cache.metrics.hits
        assert "old" == await cache.get_or_load("user:11", lambda: "db", tags=["user:11"])
        assert hits + 1 == cache.metrics.hits
    finally:
        await manager.aclose()
        await cache.aclose()


@pytest.mark.slow
async def test_a_failed_release_of_strict_marks_is_retried_as_a_release(
    private_redis: RedisServer,
) -> None:
    """A commit whose release of its pending marks times out is retried as that release: within about a second of the server answering, the tag has a new version and reads fill and hit again instead of bypassing the cache."""
    cache = AsyncCache.from_url(
        f"{private_redis.url}?namespace=release", socket_timeout=0.1, retries=0
    )
    manager = AsyncInvalidationManager(cache, RULES, retries=0)
    applied = applied_event(manager)
    try:
        assert "old" == await cache.get_or_load("user:1", lambda: "old", tags=["user:1"])
        before = (await cache.backend.tag_versions(["user:1"]))["user:1"]
        pending = await manager.begin(["user:1"])
        assert pending.marked

        with private_redis.paused():
            result = await manager.commit(pending)
            await asyncio.sleep(0.1)  # the stall itself, not a synchronization
        resumed = time.monotonic()
        assert not result.applied

        assert await asyncio.wait_for(applied.wait(), 3)
        assert time.monotonic() - resumed < 1.2
        after = (await cache.backend.tag_versions(["user:1"]))["user:1"]
        assert after not in (before, PENDING_VERSION)
        bypasses = cache.metrics.pending_bypasses
        assert "new" == await cache.get_or_load("user:1", lambda: "new", tags=["user:1"])
        assert "new" == await cache.get("user:1", tags=["user:1"])
        assert bypasses == cache.metrics.pending_bypasses
    finally:
        await manager.aclose()
        await cache.aclose()


@pytest.mark.slow
async def test_a_strict_write_against_a_hung_redis_costs_one_timeout(
    private_redis: RedisServer,
) -> None:
    """With the server paused and strict_wait=0, commit() pays one socket timeout, not one per retry; with the breaker then open, the next begin() and commit() send nothing and go to the retry queue at once."""
    cache = AsyncCache.from_url(
        f"{private_redis.url}?namespace=hung", socket_timeout=0.3, retries=0
    )
    queue = AsyncRetryQueue(cache, first_delay=60.0)  # no retry during the test
    # strict_wait=0: the writes wait for no recovery (test_manager_faults has the waits).
    manager = AsyncInvalidationManager(cache, RULES, retries=2, failure_sink=queue, strict_wait=0)
    try:
        first = await manager.begin(["user:1"])
        assert first.marked

        with private_redis.paused():
            began = time.monotonic()
            assert not (await manager.commit(first)).applied
            one_write = time.monotonic() - began
            errors = cache.metrics.backend_errors

            skips = cache.metrics.backend_skips
            began = time.monotonic()
            second = await manager.begin(["user:2"])
            assert not (await manager.commit(second)).applied
            next_write = time.monotonic() - began

        assert 0.25 < one_write < 0.55
        assert next_write < 0.05
        assert not second.marked
        assert 1 == errors
        assert (1, skips + 2) == (cache.metrics.backend_errors, cache.metrics.backend_skips)
        assert 2 == len(queue)  # the first write's release, the second's tag
    finally:
        await manager.aclose()
        await cache.aclose()


@pytest.mark.slow
async def test_the_queue_drains_within_a_second_however_long_the_cooldown_grew(
    private_redis: RedisServer,
) -> None:
    """After an outage long enough to grow the breaker's cooldown to its maximum, the retry queue does not wait it out: it probes by itself and applies what it holds within about a second of the server answering, which closes the breaker for the readers too."""
    cache = AsyncCache.from_url(
        f"{private_redis.url}?namespace=long", socket_timeout=0.05, retries=0
    )
    manager = AsyncInvalidationManager(cache, RULES, retries=0)
    applied = applied_event(manager)
    try:
        assert await cache.set("user:1", "old", tags=["user:1"])
        with private_redis.paused():
            assert not (await manager.invalidate_entity("user", new={"id": 1})).applied
            # As after a dozen failed probes: the breaker stays open for max_cooldown.
            cache.breaker.cooldown = cache.breaker.max_cooldown
            cache.breaker.open_until = time.monotonic() + cache.breaker.max_cooldown
            await asyncio.sleep(0.3)  # the stall itself, not a synchronization
        resumed = time.monotonic()

        assert await asyncio.wait_for(applied.wait(), 5)
        assert time.monotonic() - resumed < 1.2
        assert not cache.breaker.open_until
        assert None is await cache.get("user:1", tags=["user:1"])
    finally:
        await manager.aclose()
        await cache.aclose()
