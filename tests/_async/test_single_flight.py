"""In-process single-flight: concurrent misses on a key share one load, as tasks and as threads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from freshcache import AsyncCache, AsyncMemoryBackend
from freshcache._synchronization import AsyncCriticalSection

from ..concurrency import TIMEOUT, AsyncEvent, AsyncNursery, async_wait_until

FOLLOWERS = 100


class CountingBackend(AsyncMemoryBackend):
    """The memory backend, counting how often readers asked it for an entry."""

    def __init__(self) -> None:
        super().__init__()
        self.gets = 0
        self._counting = AsyncCriticalSection()

    async def get(self, key: str, tags: Sequence[str] | None = None) -> Any:
        with self._counting:
            self.gets += 1
        return await super().get(key, tags)


async def test_followers_wait_without_reading_then_read_once() -> None:
    """While a load runs, later callers send nothing to the backend; after it, each checks the fill with one read."""
    backend = CountingBackend()
    cache = AsyncCache(backend)
    started = AsyncEvent()
    release = AsyncEvent()
    calls = 0

    async def loader() -> str:
        nonlocal calls
        calls += 1
        started.set()
        await release.wait()
        return "value"

    async with AsyncNursery() as nursery:
        leader = nursery.start_soon(cache.get_or_load, "k", loader)
        assert await started.wait(TIMEOUT)
        followers = [nursery.start_soon(cache.get_or_load, "k", loader) for _ in range(FOLLOWERS)]
        await async_wait_until(lambda: FOLLOWERS == cache.metrics.inflight_waits)
        reads_during_the_load = backend.gets
        release.set()

    assert ["value"] * 101 == [leader.result(), *(follower.result() for follower in followers)]
    assert (1, 1, 101) == (calls, reads_during_the_load, backend.gets)
    assert 100 == cache.metrics.inflight_waits
    assert 101 == cache.metrics.misses


async def test_followers_share_the_leaders_error() -> None:
    """When the shared load fails, every waiting caller gets that error, and it ran once."""
    cache = AsyncCache(AsyncMemoryBackend())
    calls = 0

    async def failing() -> None:
        nonlocal calls
        calls += 1
        await async_wait_until(lambda: 19 == cache.metrics.inflight_waits)  # all joined
        raise LookupError("row locked")

    async with AsyncNursery(errors_expected=True) as nursery:
        callers = [nursery.start_soon(cache.get_or_load, "k", failing) for _ in range(20)]

    assert 1 == calls
    for caller in callers:
        with pytest.raises(LookupError, match="row locked"):
            caller.result()


async def test_callers_on_two_caches_of_one_backend_share_one_load() -> None:
    """Callers on two caches sharing one backend run the loader once: the backend's lease decides between the caches."""
    backend = AsyncMemoryBackend()
    caches = [AsyncCache(backend), AsyncCache(backend)]  # two caches: the backend's lease decides
    calls = 0
    counting = AsyncCriticalSection()

    def everyone_waits() -> bool:
        """19 followers on each cache, and the other cache's leader waiting on the lease."""
        joined = sum(cache.metrics.inflight_waits for cache in caches)
        return 38 == joined and 1 <= sum(cache.metrics.lease_waits for cache in caches)

    async def loader() -> int:
        nonlocal calls
        with counting:
            calls += 1
        await async_wait_until(everyone_waits)
        return 7

    async with AsyncNursery() as nursery:
        readers = [
            nursery.start_soon(caches[index % 2].get_or_load, "k", loader, tags=["t"])
            for index in range(40)
        ]

    assert [7] * 40 == [reader.result() for reader in readers]
    assert 1 == calls


async def test_a_follower_never_gets_data_older_than_a_write_that_finished_before_it_arrived() -> (
    None
):
    """A caller arriving after a write returned does not take a load that read the old data: it loads the new."""
    cache = AsyncCache(AsyncMemoryBackend())
    database = {"value": "old"}
    reading = AsyncEvent()
    release = AsyncEvent()

    async def slow_loader() -> str:
        value = database["value"]  # reads the old row...
        reading.set()
        await release.wait()  # ...and is slow to come back
        return value

    async def loader() -> str:
        return database["value"]

    async with AsyncNursery() as nursery:
        leader = nursery.start_soon(cache.get_or_load, "k", slow_loader, tags=["t"])
        assert await reading.wait(TIMEOUT)
        database["value"] = "new"  # a write commits...
        await cache.invalidate_tags(["t"])  # ...and returns after invalidating
        follower = nursery.start_soon(cache.get_or_load, "k", loader, tags=["t"])  # arrives after
        await async_wait_until(lambda: 1 == cache.metrics.inflight_waits)  # it joined the load
        release.set()

    assert "old" == leader.result()  # its read overlapped the write: old is a fine answer for it
    assert "new" == follower.result()
    assert "new" == await cache.get("k", tags=["t"])
