"""The core promises under concurrency in one process, as tasks and as threads: stale fills and herds.

The races across processes, and the ones of many random readers, are in tests/test_races.py.
"""

from __future__ import annotations

from freshcache import AsyncCache
from freshcache._synchronization import AsyncCriticalSection

from ..concurrency import TIMEOUT, AsyncEvent, AsyncNursery, async_wait_until

MISS = object()
HERD = 50


async def test_fill_of_data_read_before_an_invalidation_is_rejected(cache_url: str) -> None:
    """A load that read its source before an invalidation of its tag landed stores nothing, and the next load reads the new data."""
    source = {"item": "old"}
    loading = AsyncEvent()
    invalidated = AsyncEvent()

    async def slow_loader() -> str:
        value = source["item"]
        loading.set()
        await invalidated.wait()
        return value

    async def loader() -> str:
        return source["item"]

    async with AsyncCache.from_url(cache_url) as cache:
        async with AsyncNursery() as nursery:
            load = nursery.start_soon(cache.get_or_load, "item", slow_loader, tags=["item"])
            assert await loading.wait(TIMEOUT)
            source["item"] = "new"
            await cache.invalidate_tags(["item"])
            invalidated.set()

        assert "old" == load.result()
        assert 1 == cache.metrics.stale_fills_rejected
        assert 0 == cache.metrics.sets
        assert MISS is await cache.get("item", MISS)
        assert MISS is await cache.get("item", MISS, tags=["item"])
        assert "new" == await cache.get_or_load("item", loader, tags=["item"])
        assert "new" == await cache.get("item")


async def test_caller_starting_after_an_invalidation_never_gets_an_older_load(
    cache_url: str,
) -> None:
    """A get_or_load that starts after an invalidation returned never returns data read before that invalidation."""
    source = {"item": "old"}
    loading = AsyncEvent()
    release = AsyncEvent()

    async def slow_loader() -> str:
        value = source["item"]
        loading.set()
        await release.wait()
        return value

    async def loader() -> str:
        return source["item"]

    async with AsyncCache.from_url(cache_url) as cache:
        async with AsyncNursery() as nursery:
            early = nursery.start_soon(cache.get_or_load, "item", slow_loader, tags=["item"])
            assert await loading.wait(TIMEOUT)
            source["item"] = "new"
            await cache.invalidate_tags(["item"])
            # The write has returned: from here on no reader may see "old".
            late = nursery.start_soon(cache.get_or_load, "item", loader, tags=["item"])
            await async_wait_until(lambda: 1 == cache.metrics.inflight_waits)  # late joined
            release.set()

        assert "old" == early.result()
        assert "new" == late.result()


async def test_herd_on_one_cache_runs_the_loader_once(cache_url: str) -> None:
    """50 callers missing one key of one cache together run the loader once, and all get its value."""
    loads = 0
    counting = AsyncCriticalSection()

    async with AsyncCache.from_url(cache_url) as cache:

        async def loader() -> str:
            nonlocal loads
            with counting:
                loads += 1
            # Hold the load until the whole herd waits on it.
            await async_wait_until(lambda: HERD - 1 == cache.metrics.inflight_waits)
            return "value"

        async with AsyncNursery() as nursery:
            readers = [
                nursery.start_soon(cache.get_or_load, "herd", loader, tags=["herd"])
                for _ in range(HERD)
            ]

        assert ["value"] * HERD == [reader.result() for reader in readers]
        assert 1 == loads
        assert "value" == await cache.get("herd", tags=["herd"])
