"""The manager when Redis really stops and comes back."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from typing import Any

import pytest

from freshcache import (
    AsyncCache,
    AsyncInvalidationManager,
    Cache,
    ConfigurationError,
    InvalidationManager,
    Rules,
)

from ..redis_server import RedisServer

RULES = (
    Rules()
    .entity("user", tags=["user:{id}"])
    .entity("challenge", tags=["challenge:{id}", "user:{user_id}:challenges"])
)


@pytest.mark.slow
async def test_invalidations_queue_while_redis_is_down_and_drain_when_back(
    private_redis: RedisServer,
) -> None:
    """Redis stopped: invalidate_entity returns, counts and queues; Redis back: the queue drains and entries are misses."""
    cache = AsyncCache.from_url(private_redis.url, connect_timeout=0.2, retries=0)
    manager = AsyncInvalidationManager(cache, RULES, retries=1, backoff=0.01)
    manager.failure_sink.first_delay = 2.0  # type: ignore[attr-defined]  # the window checked below
    manager.failure_sink.max_delay = 2.0  # type: ignore[attr-defined]
    try:
        await cache.set("user:1:challenges", [7], tags=["user:1:challenges"])
        await cache.set("user:2:challenges", [], tags=["user:2:challenges"])
        await cache.set("challenge:9", "untouched", tags=["challenge:9"])
        private_redis.stop()
        started = time.monotonic()
        invalidation = await manager.invalidate_entity(
            "challenge", old={"id": 7, "user_id": 1}, new={"id": 7, "user_id": 2}
        )
        assert time.monotonic() - started < 2.0
        assert not invalidation.applied
        assert (1, 3) == (manager.metrics.failed_invalidations, len(manager.failure_sink))

        # The server comes back with the entries from before (persistence, as after a
        # partition). Until the queue has drained, this process does not read the cache:
        # the entries it holds are the ones the queued invalidations would drop.
        private_redis.start()
        await asyncio.sleep(0.6)  # past the breaker's cooldown: the server would answer
        assert cache.reads_suspended
        assert None is await cache.get("user:1:challenges")
        assert "from the database" == await cache.get_or_load(
            "user:1:challenges", lambda: "from the database", tags=["user:1:challenges"]
        )

        deadline = time.monotonic() + 10
        while len(manager.failure_sink) and time.monotonic() < deadline:  # noqa: ASYNC110 - polls the queue the manager owns, bounded by the deadline
            await asyncio.sleep(0.05)

        assert 0 == len(manager.failure_sink)
        assert 1 == manager.metrics.recovered_invalidations
        assert not cache.reads_suspended
        assert {"challenge:9": "untouched"} == await cache.get_many(
            ["user:1:challenges", "user:2:challenges", "challenge:9"]
        )
    finally:
        await manager.aclose()
        await cache.aclose()


@pytest.mark.slow
def test_sync_manager_drains_on_its_own_thread(private_redis: RedisServer) -> None:
    """The sync manager's queue drains on a background thread once Redis is back."""
    cache = Cache.from_url(private_redis.url, connect_timeout=0.2, retries=0)
    manager = InvalidationManager(cache, RULES, retries=0)
    manager.failure_sink.first_delay = 0.05  # type: ignore[attr-defined]
    manager.failure_sink.max_delay = 0.2  # type: ignore[attr-defined]
    try:
        cache.set("user:1", "stale", tags=["user:1"])
        private_redis.stop()
        assert not manager.invalidate_entity("user", new={"id": 1}).applied
        private_redis.start()

        deadline = time.monotonic() + 10
        while len(manager.failure_sink) and time.monotonic() < deadline:
            time.sleep(0.05)

        assert 0 == len(manager.failure_sink)
        assert None is cache.get("user:1")
    finally:
        manager.close()
        cache.close()


async def test_an_invalidation_queued_again_during_a_drain_is_not_lost() -> None:
    """A tag that fails again while the queue drains it stays queued: the drain removes only what it applied."""
    from freshcache import AsyncMemoryBackend, AsyncRetryQueue, Invalidation

    class Backend(AsyncMemoryBackend):
        during_drain: Any = None

        async def invalidate_tags(self, tags: Any) -> None:
            await super().invalidate_tags(tags)
            if self.during_drain is not None:
                callback, self.during_drain = self.during_drain, None
                await callback()  # a writer's invalidation of the same tag fails meanwhile

    backend = Backend()
    queue = AsyncRetryQueue(AsyncCache(backend), first_delay=3600)
    await queue.put(Invalidation(tags=("user:1",)))
    backend.during_drain = lambda: queue.put(Invalidation(tags=("user:1",)))

    assert not await queue.drain()  # applied the first, but the second arrived meanwhile

    assert 1 == len(queue)
    assert await queue.drain()
    assert 0 == len(queue)
    await queue.aclose()


def pause_for(server: RedisServer, seconds: float) -> threading.Thread:
    """SIGSTOP the server now and SIGCONT it ``seconds`` later, from a thread of its own."""
    assert server.process is not None
    pid = server.process.pid

    def resume_later() -> None:
        time.sleep(seconds)
        os.kill(pid, signal.SIGCONT)

    os.kill(pid, signal.SIGSTOP)
    resumer = threading.Thread(target=resume_later)
    resumer.start()
    return resumer


@pytest.mark.slow
async def test_a_strict_write_marks_its_tags_once_redis_is_back_before_it_commits(
    private_redis: RedisServer,
) -> None:
    """Redis paused at a strict write's begin: it waits for the server and marks, so no process reads the old entry once the commit is visible.

    Unmarked, the commit went ahead: another process that read the new row from the
    database could then hit the entry from before it, until the queued invalidation landed.
    """
    reader = AsyncCache.from_url(private_redis.url)  # another process's cache: its own breaker
    writer = AsyncCache.from_url(private_redis.url, socket_timeout=0.2, retries=0)
    manager = AsyncInvalidationManager(writer, RULES, retries=0, strict_wait=10.0)
    try:
        await reader.set("user:1", "before the commit", tags=["user:1"])
        resumer = pause_for(private_redis, 1.0)
        started = time.monotonic()
        pending = await manager.begin(["user:1"])
        marked_after = time.monotonic() - started
        resumer.join()

        assert pending.marked
        assert marked_after >= 1.0  # not before the server was back
        # ... the transaction commits in the database here: the old entry is out of reach ...
        assert None is await reader.get("user:1", tags=["user:1"])
        invalidation = await manager.commit(pending)
        assert invalidation.applied
        assert None is await reader.get("user:1", tags=["user:1"])
        assert 0 == manager.metrics.unsettled_strict_commits
    finally:
        await manager.aclose()
        await writer.aclose()
        await reader.aclose()


@pytest.mark.slow
async def test_a_strict_commit_whose_release_failed_waits_too(private_redis: RedisServer) -> None:
    """Marked, then Redis paused before the release: the commit returns once the queued release landed."""
    cache = AsyncCache.from_url(private_redis.url, socket_timeout=0.2, retries=0)
    manager = AsyncInvalidationManager(cache, RULES, retries=0, strict_wait=10.0)
    try:
        pending = await manager.begin(["user:1"])
        assert pending.marked
        resumer = pause_for(private_redis, 1.0)
        started = time.monotonic()
        await manager.commit(pending)
        returned = time.monotonic() - started
        resumer.join()

        assert returned >= 1.0
        assert 0 == manager.metrics.unsettled_strict_commits
        assert not (await cache.inspect_tag("user:1")).pending  # released, not left to expire
    finally:
        await manager.aclose()
        await cache.aclose()


@pytest.mark.slow
def test_a_strict_commit_waits_at_most_strict_wait(private_redis: RedisServer) -> None:
    """Redis paused longer than strict_wait: the sync write waits that long in all (marks and release), then goes on, counted."""
    cache = Cache.from_url(private_redis.url, socket_timeout=0.2, retries=0)
    manager = InvalidationManager(cache, RULES, retries=0, strict_wait=0.5)
    try:
        resumer = pause_for(private_redis, 2.5)
        started = time.monotonic()
        pending = manager.begin(["user:1"])
        invalidation = manager.commit(pending)
        returned = time.monotonic() - started
        resumer.join()

        assert not pending.marked
        assert not invalidation.applied
        assert 0.5 <= returned < 1.5  # strict_wait, and at most one socket timeout over it
        assert 1 == manager.metrics.unsettled_strict_commits
    finally:
        manager.close()
        cache.close()


def test_strict_wait_is_checked() -> None:
    """A negative or non-number strict_wait is refused at construction, naming it."""
    from freshcache import AsyncMemoryBackend

    for bad in (-1, "5", float("nan")):
        with pytest.raises(ConfigurationError, match="strict_wait"):
            AsyncInvalidationManager(AsyncCache(AsyncMemoryBackend()), strict_wait=bad)  # type: ignore[arg-type]
