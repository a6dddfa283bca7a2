"""Checked by mypy (tests/test_typing.py), never run: what the caches' types promise their callers.

An ``assert_type`` fails the check when a type is not the one promised; an ignore that
mypy finds unused (``warn_unused_ignores``) fails it when a misuse stops being an error.
"""

from __future__ import annotations

from typing_extensions import assert_type

from freshcache import AsyncCache, AsyncCachedFunction, Cache, CachedFunction


async def fetch_user(user_id: int) -> dict[str, int]:
    return {"id": user_id}


def fetch_user_sync(user_id: int) -> dict[str, int]:
    return {"id": user_id}


async def async_cache_types(cache: AsyncCache) -> None:
    # get_or_load is generic in what the loader gives: awaited for an async loader.
    assert_type(await cache.get_or_load("user:1", lambda: fetch_user(1)), dict[str, int])
    assert_type(await cache.get_or_load("user:1", lambda: fetch_user_sync(1)), dict[str, int])
    assert_type(await cache.get_or_load("n", lambda: 5, tags=["n"], ttl=60), int)

    @cache.cached(key="user:{user_id}", tags=["user:{user_id}"])
    async def user(user_id: int) -> dict[str, int]:
        return {"id": user_id}

    typed: AsyncCachedFunction[[int], dict[str, int]] = user
    assert_type(typed.key_for(2), str)
    assert_type(await user(1), dict[str, int])
    assert_type(user.key_for(1), str)
    assert_type(await user.invalidate(1), int)
    await user("one")  # type: ignore[arg-type]
    user.key_for(1, 2)  # type: ignore[call-arg]

    # A plain function is not an async one: refused here as it is at run time.
    cache.cached(key="user:{user_id}")(fetch_user_sync)  # type: ignore[arg-type]


def sync_cache_types(cache: Cache) -> None:
    assert_type(cache.get_or_load("user:1", lambda: fetch_user_sync(1)), dict[str, int])
    assert_type(cache.get_or_load("n", lambda: 5, tags=["n"], ttl=60), int)

    @cache.cached(key="user:{user_id}", tags=["user:{user_id}"])
    def user(user_id: int) -> dict[str, int]:
        return {"id": user_id}

    typed: CachedFunction[[int], dict[str, int]] = user
    assert_type(typed.key_for(2), str)
    assert_type(user(1), dict[str, int])
    assert_type(user.key_for(user_id=1), str)
    assert_type(user.invalidate(1), int)
    user.invalidate("one")  # type: ignore[arg-type]
