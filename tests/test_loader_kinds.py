"""Each cache takes the kind of function it can call: Cache sync ones, AsyncCache async ones (and sync loaders)."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Iterator

import pytest

from freshcache import AsyncCache, Cache, ConfigurationError


@pytest.fixture
def cache(cache_url: str) -> Iterator[Cache]:
    cache = Cache.from_url(cache_url, lease_ttl=30, lease_wait=5)
    cache.clear()
    yield cache
    cache.close()


@pytest.fixture
async def async_cache(cache_url: str) -> AsyncIterator[AsyncCache]:
    cache = AsyncCache.from_url(cache_url, lease_ttl=30, lease_wait=5)
    await cache.clear()
    yield cache
    await cache.aclose()


async def fetch(user_id: int) -> dict[str, int]:
    return {"id": user_id}


def fetch_sync(user_id: int) -> dict[str, int]:
    return {"id": user_id}


class AsyncCallable:
    async def __call__(self, user_id: int) -> dict[str, int]:
        return {"id": user_id}


def backend_calls(cache: Cache | AsyncCache) -> int:
    snapshot = cache.metrics.snapshot()
    return int(snapshot["hits"] + snapshot["misses"] + snapshot["sets"])


@pytest.mark.parametrize(
    "function", [fetch, functools.partial(fetch), AsyncCallable()], ids=["def", "partial", "object"]
)
def test_cache_cached_refuses_an_async_function(cache: Cache, function: object) -> None:
    """Cache.cached on an async function fails when decorated, instead of caching its coroutine."""
    with pytest.raises(ConfigurationError, match=r"Cache\.cached would cache the coroutine"):
        cache.cached(key="user:{user_id}")(function)  # type: ignore[arg-type]


def test_cache_cached_refuses_a_generator_function(cache: Cache) -> None:
    """Cache.cached on a generator function fails when decorated: a generator is consumed once."""

    def numbers(user_id: int) -> Iterator[int]:
        yield user_id

    with pytest.raises(ConfigurationError, match="a generator can be consumed once"):
        cache.cached(key="user:{user_id}")(numbers)


@pytest.mark.parametrize("loader", [lambda: fetch(1), functools.partial(fetch, 1)])
def test_cache_get_or_load_refuses_an_async_loader(cache: Cache, loader: object) -> None:
    """Cache.get_or_load with a loader that returns a coroutine raises ConfigurationError, caches nothing and frees the lease."""
    with pytest.raises(ConfigurationError, match="use AsyncCache for async loaders"):
        cache.get_or_load("user:1", loader)  # type: ignore[arg-type]

    assert {"id": 1} == cache.get_or_load("user:1", lambda: fetch_sync(1))
    assert (1, 0) == (cache.metrics.sets, cache.metrics.lease_timeouts)


def test_cache_get_or_load_refuses_an_async_def_before_taking_a_lease(cache: Cache) -> None:
    """An async def given to Cache.get_or_load is refused on its miss, before a lease is taken or the loader called."""

    async def load() -> int:
        return 1

    with pytest.raises(ConfigurationError, match="is an async function"):
        cache.get_or_load("user:1", load)
    assert 1 == backend_calls(cache)  # the read that found nothing; no lease, no fill


def test_a_loader_that_returns_a_generator_is_refused(cache: Cache) -> None:
    """A generator returned by a loader is refused, not cached for the next caller to find empty."""
    with pytest.raises(ConfigurationError, match="can be consumed once"):
        cache.get_or_load("user:1", lambda: (n for n in range(3)))
    assert [0, 1, 2] == cache.get_or_load("user:1", lambda: [0, 1, 2])
    assert 1 == cache.metrics.sets


def test_async_cache_cached_refuses_a_plain_function(async_cache: AsyncCache) -> None:
    """AsyncCache.cached on a plain def fails when decorated, instead of turning it into a coroutine function."""
    with pytest.raises(ConfigurationError, match=r"AsyncCache\.cached wraps an async def"):
        async_cache.cached(key="user:{user_id}")(fetch_sync)  # type: ignore[arg-type]


async def test_async_cache_cached_takes_an_async_callable_object(async_cache: AsyncCache) -> None:
    """An object whose __call__ is async is an async function for AsyncCache.cached."""
    cached = async_cache.cached(key="user:{user_id}")(functools.partial(fetch))

    assert {"id": 3} == await cached(user_id=3)
    assert {"id": 3} == await cached(user_id=3)
    assert (1, 1) == (async_cache.metrics.hits, async_cache.metrics.sets)


async def test_async_cache_get_or_load_takes_sync_and_async_loaders(
    async_cache: AsyncCache,
) -> None:
    """AsyncCache.get_or_load awaits an async loader's result and takes a sync loader's as it is."""
    assert {"id": 1} == await async_cache.get_or_load("user:1", lambda: fetch(1))
    assert {"id": 2} == await async_cache.get_or_load("user:2", lambda: fetch_sync(2))
    assert {"id": 1} == await async_cache.get_or_load("user:1", lambda: fetch(1))
    assert (1, 2) == (async_cache.metrics.hits, async_cache.metrics.sets)


async def test_async_cache_refuses_an_async_generator(async_cache: AsyncCache) -> None:
    """An async generator is refused when decorated and when a loader returns one."""

    async def numbers(user_id: int) -> AsyncIterator[int]:
        yield user_id

    with pytest.raises(ConfigurationError, match=r"AsyncCache\.cached wraps an async def"):
        async_cache.cached(key="user:{user_id}")(numbers)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="can be consumed once"):
        await async_cache.get_or_load("user:1", lambda: numbers(1))
