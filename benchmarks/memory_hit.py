"""Suite ``memory``: one hit in process memory, freshcache against its peers.

freshcache's memory backend keeps objects as they are, so a hit is dictionary lookups
plus the check of the entry's tag version; so are cachetools' and dogpile's. cashews'
``mem://`` and aiocache's ``SimpleMemoryCache`` are the async peers. The reference of
each table is freshcache's ``get_or_load`` hit with one tag, and a peer's ratio says how
many times slower than it the peer is.
"""

from __future__ import annotations

import asyncio
import threading
import warnings
from contextlib import AsyncExitStack
from typing import Any

from benchmarks.checks import expect_hit, expect_only_hits
from benchmarks.lineup import Lineup
from benchmarks.settings import PAYLOAD, Settings
from benchmarks.tables import Table, at_least
from benchmarks.timing import AsyncLoop, SyncLoop, measure, measure_async
from freshcache import AsyncCache, Cache

KEY = "hit"
TAG = "hit-tag"
TTL = 600

ASYNC_REFERENCE = "freshcache AsyncCache.get_or_load (1 tag)"
SYNC_REFERENCE = "freshcache Cache.get_or_load (1 tag)"


def run(settings: Settings) -> list[Table]:
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", category=DeprecationWarning, module=r"(aiocache|cashews|dogpile)\."
        )
        return [asyncio.run(_async_table(settings)), _sync_table(settings)]


def _load() -> dict[str, Any]:
    return PAYLOAD


async def _async_table(settings: Settings) -> Table:
    lineup: Lineup[AsyncLoop] = Lineup()
    async with AsyncExitStack() as stack:
        cache = AsyncCache.from_url("memory://")
        stack.push_async_callback(cache.aclose)
        await cache.get_or_load(KEY, _load, tags=[TAG], ttl=TTL)
        expect_hit(await cache.get(KEY), PAYLOAD, "freshcache")

        async def freshcache_get_or_load(ops: int) -> None:
            get_or_load, tags = cache.get_or_load, [TAG]
            for _ in range(ops):
                await get_or_load(KEY, _load, tags=tags, ttl=TTL)

        async def freshcache_get(ops: int) -> None:
            get = cache.get
            for _ in range(ops):
                await get(KEY)

        lineup.add(ASYNC_REFERENCE, freshcache_get_or_load)
        lineup.add("freshcache AsyncCache.get", freshcache_get)

        goal = at_least(5.0)
        name = "cashews get (mem)"
        try:
            lineup.add(name, await _cashews(stack), goal)
        except Exception as exc:
            lineup.unavailable(name, exc, goal)
        name = "aiocache SimpleMemoryCache.get"
        try:
            lineup.add(name, await _aiocache(stack))
        except Exception as exc:
            lineup.unavailable(name, exc)

        results = await measure_async(lineup.loops, rounds=settings.rounds, ops=settings.memory_ops)
        expect_only_hits(cache.metrics, "freshcache")
    return lineup.table(
        results,
        suite="memory",
        title="Memory hit, asyncio: sequential latency, one caller",
        reference=ASYNC_REFERENCE,
        goal="freshcache's get_or_load hit, tag check included, is at least 5x faster than "
        "cashews' memory get (its ratio ≥ 5x).",
    )


async def _cashews(stack: AsyncExitStack) -> AsyncLoop:
    from cashews import Cache as CashewsCache

    cache = CashewsCache()
    cache.setup("mem://")
    stack.push_async_callback(cache.close)
    await cache.set(KEY, PAYLOAD, expire=TTL)
    expect_hit(await cache.get(KEY), PAYLOAD, "cashews")

    async def cashews_get(ops: int) -> None:
        get = cache.get
        for _ in range(ops):
            await get(KEY)

    return cashews_get


async def _aiocache(stack: AsyncExitStack) -> AsyncLoop:
    from aiocache import SimpleMemoryCache  # type: ignore[import-untyped]

    cache = SimpleMemoryCache()
    stack.push_async_callback(cache.close)
    await cache.set(KEY, PAYLOAD, ttl=TTL)
    expect_hit(await cache.get(KEY), PAYLOAD, "aiocache")

    async def aiocache_get(ops: int) -> None:
        get = cache.get
        for _ in range(ops):
            await get(KEY)

    return aiocache_get


def _sync_table(settings: Settings) -> Table:
    lineup: Lineup[SyncLoop] = Lineup()
    with Cache.from_url("memory://") as cache:
        cache.get_or_load(KEY, _load, tags=[TAG], ttl=TTL)
        expect_hit(cache.get(KEY), PAYLOAD, "freshcache")

        def freshcache_get_or_load(ops: int) -> None:
            get_or_load, tags = cache.get_or_load, [TAG]
            for _ in range(ops):
                get_or_load(KEY, _load, tags=tags, ttl=TTL)

        def freshcache_get(ops: int) -> None:
            get = cache.get
            for _ in range(ops):
                get(KEY)

        lineup.add(SYNC_REFERENCE, freshcache_get_or_load)
        lineup.add("freshcache Cache.get", freshcache_get)

        # freshcache checks a tag version and takes a lock; plain cachetools does neither.
        goal = at_least(1.5)
        try:
            plain, locked = _cachetools()
            lineup.add("cachetools TTLCache.get", plain, goal)
            lineup.add("cachetools TTLCache.get under threading.Lock", locked)
        except Exception as exc:
            lineup.unavailable("cachetools TTLCache.get", exc, goal)
            lineup.unavailable("cachetools TTLCache.get under threading.Lock", exc)
        name = "dogpile.cache memory region.get"
        try:
            lineup.add(name, _dogpile())
        except Exception as exc:
            lineup.unavailable(name, exc)

        results = measure(lineup.loops, rounds=settings.rounds, ops=settings.memory_ops)
        expect_only_hits(cache.metrics, "freshcache")
    return lineup.table(
        results,
        suite="memory",
        title="Memory hit, sync: sequential latency, one thread",
        reference=SYNC_REFERENCE,
        goal="freshcache's get_or_load hit, tag check and lock included, is at least 1.5x "
        "faster than cachetools' plain TTLCache.get (its ratio ≥ 1.5x); under the lock its "
        "docs recommend for threads it is shown for comparison.",
    )


def _cachetools() -> tuple[SyncLoop, SyncLoop]:
    from cachetools import TTLCache

    cache: TTLCache[str, Any] = TTLCache(maxsize=10_000, ttl=TTL)
    cache[KEY] = PAYLOAD
    expect_hit(cache.get(KEY), PAYLOAD, "cachetools")
    lock = threading.Lock()

    def cachetools_get(ops: int) -> None:
        get = cache.get
        for _ in range(ops):
            get(KEY)

    def cachetools_locked_get(ops: int) -> None:
        get = cache.get
        for _ in range(ops):
            with lock:
                get(KEY)

    return cachetools_get, cachetools_locked_get


def _dogpile() -> SyncLoop:
    from dogpile.cache import make_region

    region = make_region().configure("dogpile.cache.memory", expiration_time=TTL)
    region.set(KEY, PAYLOAD)
    expect_hit(region.get(KEY), PAYLOAD, "dogpile.cache")

    def dogpile_get(ops: int) -> None:
        get = region.get
        for _ in range(ops):
            get(KEY)

    return dogpile_get
