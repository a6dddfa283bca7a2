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


async def test_followers_do_not_touch_the_backend() -> None:
    """While a load runs, later callers join it without a backend read of their own."""
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
    release.set()

    assert ["value"] * 101 == await asyncio.gather(leader, *followers)
    assert 1 == calls
    assert 1 == backend.gets
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
