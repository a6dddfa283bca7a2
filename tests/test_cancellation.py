"""Callers cancelled mid-load or mid-invalidation (a request timeout): nothing is lost, nobody else fails.

Cancellation exists for tasks only, so these tests have no thread twin.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from freshcache import AsyncCache, AsyncInvalidationManager, AsyncMemoryBackend, AsyncRetryQueue

from .concurrency import async_wait_until


class GatedBackend(AsyncMemoryBackend):
    """The memory backend whose invalidations wait at a gate the test opens, one call at a time."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[str]] = []
        self.arrived = asyncio.Event()
        self.gate = asyncio.Event()

    async def invalidate_tags(self, tags: Sequence[str]) -> None:
        self.calls.append(list(tags))
        self.arrived.set()
        await self.gate.wait()
        await super().invalidate_tags(tags)

    async def next_call(self) -> list[str]:
        """Wait for the next invalidation to reach the backend; it stays at the gate."""
        await asyncio.wait_for(self.arrived.wait(), 5)
        self.arrived.clear()
        return self.calls[-1]

    def open_gate(self) -> None:
        self.gate.set()
        self.gate = asyncio.Event()


async def test_a_cancelled_leader_leaves_its_batch_to_the_next_caller() -> None:
    """When the caller leading a shared operation is cancelled mid-flight, the other callers of its batch are not failed: one of them sends the batch again, every tag is applied, and the breaker stays closed."""
    backend = GatedBackend()
    cache = AsyncCache(backend)
    for tag in "abcd":
        assert await cache.set(tag, "old", tags=[tag])

    first = asyncio.create_task(cache.invalidate_tags(["a"]))
    assert ["a"] == await backend.next_call()
    queued = {tag: asyncio.create_task(cache.invalidate_tags([tag])) for tag in "bcd"}
    await asyncio.sleep(0)  # each queued task runs up to its wait in the batcher
    backend.open_gate()
    await asyncio.wait_for(first, 5)
    assert ["b", "c", "d"] == await backend.next_call()  # "b" leads the second batch

    queued["b"].cancel()
    assert ["b", "c", "d"] == await backend.next_call()  # sent again by "c"
    backend.open_gate()
    await asyncio.wait_for(asyncio.gather(queued["c"], queued["d"]), 5)

    assert queued["b"].cancelled()
    assert (0, 0.0) == (cache.metrics.backend_errors, cache.breaker.open_until)
    assert {} == await cache.get_many(["a", "b", "c", "d"])


async def test_a_cancelled_invalidation_is_queued_and_applied() -> None:
    """A manager call cancelled while its invalidation is in flight hands it to the retry queue, which applies it; reads are suspended meanwhile."""
    backend = GatedBackend()
    cache = AsyncCache(backend)
    queue = AsyncRetryQueue(cache, first_delay=3600)  # drained by the test
    manager = AsyncInvalidationManager(cache, failure_sink=queue)
    try:
        assert await cache.set("a", "old", tags=["a"])
        call = asyncio.create_task(manager.invalidate_tags(["a"]))
        assert ["a"] == await backend.next_call()

        call.cancel()
        await asyncio.gather(call, return_exceptions=True)

        assert call.cancelled()
        assert (1, 1) == (len(queue), manager.metrics.failed_invalidations)
        assert cache.reads_suspended
        drain = asyncio.create_task(queue.drain())
        assert ["a"] == await backend.next_call()  # sent again, by the queue
        backend.open_gate()
        assert await asyncio.wait_for(drain, 5)
        assert not cache.reads_suspended
        assert None is await cache.get("a", tags=["a"])
    finally:
        await manager.aclose()


async def test_cancelled_leader_does_not_cancel_followers() -> None:
    """A follower of a cancelled load is not cancelled itself: it loads in its place."""
    cache = AsyncCache(AsyncMemoryBackend())
    started = asyncio.Event()

    async def stuck() -> str:
        started.set()
        await asyncio.Event().wait()  # never set: the load only ends by cancellation
        return "never"

    async def quick() -> str:
        return "follower's own"

    leader = asyncio.create_task(cache.get_or_load("k", stuck))
    await asyncio.wait_for(started.wait(), 5)
    follower = asyncio.create_task(cache.get_or_load("k", quick))
    await async_wait_until(lambda: 1 == cache.metrics.inflight_waits)  # it joined the load
    leader.cancel()

    assert "follower's own" == await asyncio.wait_for(follower, 5)
    with pytest.raises(asyncio.CancelledError):
        await leader
