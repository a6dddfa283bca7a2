"""Suite ``tags``: what invalidating one tag costs on Redis, by how many entries depend on it.

freshcache replaces the tag's version (one script call, whatever the number of
dependents); cashews keeps a set of the tag's keys and deletes them, SPOP 100 at a time.
Each round refills every tag's dependents (untimed) and then times one invalidation
per tag; the figure is the median over rounds.
"""

from __future__ import annotations

import asyncio
import gc
import time
import warnings
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

from benchmarks.settings import Settings
from benchmarks.tables import Table, at_least, at_most
from benchmarks.timing import Samples, rotated
from freshcache import AsyncCache, FillStatus

TTL = 900
WARM_UP_ROUND_TRIPS = 3


def run(settings: Settings) -> list[Table]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"cashews\.")
        return asyncio.run(_tables(settings))


def freshcache_name(dependents: int) -> str:
    return f"freshcache invalidate_tags, {dependents:,} dependent{'' if dependents == 1 else 's'}"


def cashews_name(dependents: int) -> str:
    return f"cashews delete_tags, {dependents:,} dependents"


async def in_parallel(count: int, concurrency: int, job: Callable[[int], Awaitable[Any]]) -> None:
    """``job(i)`` for every i below ``count``, at most ``concurrency`` at a time."""
    indexes = iter(range(count))

    async def worker() -> None:
        for index in indexes:
            await job(index)

    await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))


class _Freshcache:
    """Entries that depend on ``deps-<n>``, refilled under the tag's current version."""

    def __init__(self, cache: AsyncCache, dependents: int, concurrency: int) -> None:
        self.cache = cache
        self.dependents = dependents
        self.concurrency = concurrency
        self.tag = f"deps-{dependents}"

    def key(self, index: int) -> str:
        return f"dep{self.dependents}:{index}"

    async def refill(self) -> None:
        # What cache.set does per key, with the versions read once, not once per key.
        backend = self.cache.backend
        ticket = await backend.begin_fill(self.key(0), [self.tag], token="bench", lease_ttl=None)
        if ticket.status is not FillStatus.ACQUIRED:
            raise RuntimeError(f"could not fill under {self.tag}: {ticket}")

        async def fill(index: int) -> None:
            await backend.fill(
                self.key(index), {"i": index}, [self.tag], ticket.versions, ttl=TTL, token=None
            )

        await in_parallel(self.dependents, self.concurrency, fill)

    async def warm_up(self) -> None:
        await self.cache.backend.ping()

    async def invalidate(self) -> None:
        await self.cache.invalidate_tags([self.tag])

    async def last_entry(self) -> object:
        return await self.cache.get(self.key(self.dependents - 1), tags=[self.tag])


class _Cashews:
    """Entries tagged through cashews' tag registry; ``delete_tags`` removes them one by one."""

    def __init__(self, cache: Any, namespace: str, dependents: int, concurrency: int) -> None:
        self.cache = cache
        self.dependents = dependents
        self.concurrency = concurrency
        self.prefix = f"{namespace}:cashews:dep:"
        self.tag = f"{namespace}:cashews-deps"
        cache.register_tag(self.tag, key_template=self.prefix + "{i}")

    async def refill(self) -> None:
        async def set_one(index: int) -> None:
            await self.cache.set(
                self.prefix + str(index), {"i": index}, expire=TTL, tags=[self.tag]
            )

        await in_parallel(self.dependents, self.concurrency, set_one)

    async def warm_up(self) -> None:
        await self.cache.ping()

    async def invalidate(self) -> None:
        await self.cache.delete_tags(self.tag)

    async def last_entry(self) -> object:
        return await self.cache.get(self.prefix + str(self.dependents - 1))


async def _tables(settings: Settings) -> list[Table]:
    sizes = sorted({*settings.tag_sizes, settings.cashews_dependents})
    async with AsyncExitStack() as stack:
        cache = AsyncCache.from_url(settings.redis_url, namespace=settings.namespace)
        stack.push_async_callback(cache.aclose)
        stack.push_async_callback(cache.clear)
        contestants: dict[str, _Freshcache | _Cashews] = {
            freshcache_name(n): _Freshcache(cache, n, settings.fill_concurrency) for n in sizes
        }
        cashews = cashews_name(settings.cashews_dependents)
        cashews_error: BaseException | None = None
        try:
            contestants[cashews] = await _setup_cashews(settings, stack)
        except Exception as exc:
            cashews_error = exc

        times: dict[str, list[float]] = {name: [] for name in contestants}
        for round_index in range(settings.tag_rounds):
            for name in rotated(list(contestants), round_index):
                contestant = contestants[name]
                await contestant.refill()
                expected = {"i": contestant.dependents - 1}
                if await contestant.last_entry() != expected:
                    raise RuntimeError(f"{name}: the refill did not leave a hit")
                times[name].append(await _timed_once(contestant))
                if await contestant.last_entry() is not None:
                    raise RuntimeError(f"{name}: an entry survived the invalidation")
    samples = {name: Samples(tuple(values)) for name, values in times.items()}

    flat = Table(
        suite="tags",
        title="Tag invalidation on Redis: one call, by number of dependent entries",
        reference=freshcache_name(sizes[0]),
        goal=f"flat: invalidating a tag with {sizes[-1]:,} dependents costs at most 1.5x "
        f"invalidating one with {sizes[0]:,}.",
    )
    for n in sizes:
        name = freshcache_name(n)
        flat.add(name, samples[name], None if n == sizes[0] else at_most(1.5))

    versus = Table(
        suite="tags",
        title=f"Tag invalidation at {settings.cashews_dependents:,} dependents: freshcache against cashews",
        reference=freshcache_name(settings.cashews_dependents),
        goal="freshcache is at least 100x faster than cashews' delete_tags (its ratio ≥ 100x).",
    )
    versus.add(versus.reference, samples[versus.reference])
    if cashews_error is None:
        versus.add(cashews, samples[cashews], at_least(100.0))
    else:
        versus.add(
            cashews, None, at_least(100.0), f"{type(cashews_error).__name__}: {cashews_error}"
        )
    return [flat, versus]


async def _timed_once(contestant: _Freshcache | _Cashews) -> float:
    """One invalidation, timed alone: a single call of ~100 µs is at the mercy of the scheduler,
    so the refill's garbage is collected and the connection and both processes woken first."""
    gc.collect()
    for _ in range(WARM_UP_ROUND_TRIPS):
        await contestant.warm_up()
    gc.disable()
    try:
        started = time.perf_counter()
        await contestant.invalidate()
        return time.perf_counter() - started
    finally:
        gc.enable()


async def _setup_cashews(settings: Settings, stack: AsyncExitStack) -> _Cashews:
    from cashews import Cache as CashewsCache

    cache = CashewsCache()
    cache.setup(settings.redis_url)
    stack.push_async_callback(cache.close)
    contestant = _Cashews(
        cache, settings.namespace, settings.cashews_dependents, settings.fill_concurrency
    )
    stack.push_async_callback(cache.delete_tags, contestant.tag)
    return contestant
