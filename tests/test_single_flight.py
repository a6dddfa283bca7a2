"""In-process single-flight: concurrent misses on a key share one load."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from freshcache import AsyncCache, AsyncMemoryBackend, Cache, MemoryBackend


class CountingBackend(AsyncMemoryBackend):
    """The memory backend, counting how often readers asked it for an entry."""

    gets = 0

    async def get(self, key: str, tags: Sequence[str] | None = None) -> Any:
        self.gets += 1
        return await super().get(key, tags)


async def test_followers_wait_without_reading_then_read_once() -> None:
    """While a load runs, later callers send nothing to the backend; after it, each checks the fill with one read."""
    backend = CountingBackend()
    cache = AsyncCache(backend)
    started = asyncio.Event()
    release = asyncio.Event()
    calls = 0

    async def loader() -> str:
        nonlocal calls
        calls += 1
        started.set()
        await release.wait()
        return "value"

    leader = asyncio.create_task(cache.get_or_load("k", loader))
    await started.wait()
    followers = [asyncio.create_task(cache.get_or_load("k", loader)) for _ in range(100)]
    await asyncio.sleep(0.01)
    reads_during_the_load = backend.gets
    release.set()

    assert ["value"] * 101 == await asyncio.gather(leader, *followers)
    assert (1, 1, 101) == (calls, reads_during_the_load, backend.gets)
    assert 100 == cache.metrics.inflight_waits
    assert 101 == cache.metrics.misses


async def test_cancelled_leader_does_not_cancel_followers() -> None:
    """A follower of a cancelled load is not cancelled itself: it loads in its place."""
    cache = AsyncCache(AsyncMemoryBackend())
    started = asyncio.Event()

    async def stuck() -> str:
        started.set()
        await asyncio.sleep(3600)
        return "never"

    async def quick() -> str:
        return "follower's own"

    leader = asyncio.create_task(cache.get_or_load("k", stuck))
    await started.wait()
    follower = asyncio.create_task(cache.get_or_load("k", quick))
    await asyncio.sleep(0.01)
    leader.cancel()

    assert "follower's own" == await asyncio.wait_for(follower, 5)
    with pytest.raises(asyncio.CancelledError):
        await leader


async def test_followers_share_the_leaders_error() -> None:
    """When the shared load fails, every waiting caller gets that error, and it ran once."""
    cache = AsyncCache(AsyncMemoryBackend())
    calls = 0

    async def failing() -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        raise LookupError("row locked")

    results = await asyncio.gather(
        *[cache.get_or_load("k", failing) for _ in range(20)], return_exceptions=True
    )

    assert 1 == calls
    assert all(isinstance(result, LookupError) for result in results)


def test_threads_share_one_load() -> None:
    """Sync callers on many threads run the loader once, even through one shared backend."""
    backend = MemoryBackend()
    caches = [Cache(backend), Cache(backend)]  # two caches: the backend's lease decides
    calls = 0
    lock = threading.Lock()
    barrier = threading.Barrier(40)

    def loader() -> int:
        nonlocal calls
        with lock:
            calls += 1
        threading.Event().wait(0.2)
        return 7

    def read(index: int) -> int:
        barrier.wait(5)
        return caches[index % 2].get_or_load("k", loader, tags=["t"])

    with ThreadPoolExecutor(40) as pool:
        results = list(pool.map(read, range(40)))

    assert [7] * 40 == results
    assert 1 == calls


async def test_a_follower_never_gets_data_older_than_a_write_that_finished_before_it_arrived() -> (
    None
):
    """A caller arriving after a write returned does not take a load that read the old data: it loads the new."""
    cache = AsyncCache(AsyncMemoryBackend())
    database = {"value": "old"}
    reading = asyncio.Event()
    release = asyncio.Event()

    async def slow_loader() -> str:
        value = database["value"]  # reads the old row...
        reading.set()
        await release.wait()  # ...and is slow to come back
        return value

    async def loader() -> str:
        return database["value"]

    leader = asyncio.create_task(cache.get_or_load("k", slow_loader, tags=["t"]))
    await reading.wait()
    database["value"] = "new"  # a write commits...
    await cache.invalidate_tags(["t"])  # ...and returns after invalidating
    follower = asyncio.create_task(
        cache.get_or_load("k", loader, tags=["t"])
    )  # arrives after the write
    await asyncio.sleep(0.01)
    release.set()

    assert "old" == await leader  # its read overlapped the write: old is a fine answer for it
    assert "new" == await follower
    assert "new" == await cache.get("k", tags=["t"])
