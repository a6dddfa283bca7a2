"""Values through the cache: the same on a miss and on a hit, on memory and on Redis, or refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from freshcache import AsyncCache, SerializationError
from freshcache.testing._async.suite import EVERY_KIND, type_shape


@pytest.fixture
async def cache(cache_url: str) -> AsyncIterator[AsyncCache]:
    cache = AsyncCache.from_url(cache_url)
    yield cache
    await cache.aclose()


class Loader:
    """A loader that counts its calls and returns a new copy of the same value each time."""

    def __init__(self, make: Any) -> None:
        self.make = make
        self.calls = 0

    async def __call__(self) -> Any:
        self.calls += 1
        return self.make()


async def test_a_miss_and_a_hit_give_the_same_value(cache: AsyncCache) -> None:
    """get_or_load returns an equal value of the same types on the miss and on the hit after it."""
    loader = Loader(lambda: dict(EVERY_KIND))

    missed = await cache.get_or_load("k", loader, tags=["t"])
    hit = await cache.get_or_load("k", loader, tags=["t"])

    assert 1 == loader.calls
    assert missed == hit
    assert type_shape(missed) == type_shape(hit)
    assert type_shape(EVERY_KIND) == type_shape(await cache.get("k"))


async def test_a_value_that_cannot_be_cached_is_served_and_frees_the_key(cache: AsyncCache) -> None:
    """A loaded value the serializer refuses is returned, counted and not cached; the next caller loads at once."""
    value = {"a": [1, 2, 3, object()]}
    loader = Loader(lambda: value)

    assert value is await cache.get_or_load("k", loader, tags=["t"])
    assert value is await cache.get_or_load("k", loader, tags=["t"])

    assert 2 == loader.calls
    assert (2, 0, 0) == (
        cache.metrics.values_refused,
        cache.metrics.sets,
        cache.metrics.lease_waits,
    )
    assert not cache.breaker.open_until  # the backend is fine


async def test_set_names_the_part_it_cannot_store(cache: AsyncCache) -> None:
    """set raises SerializationError naming the key and the offending part, and stores nothing."""
    with pytest.raises(
        SerializationError,
        match=r"cannot cache 'k': value\['a'\]\[3\]: object is not supported by the json serializer",
    ):
        await cache.set("k", {"a": [1, 2, 3, object()]}, tags=["t"])

    assert "absent" == await cache.get("k", "absent")


async def test_changing_a_loaded_value_does_not_change_the_cache(cache: AsyncCache) -> None:
    """The caller that loaded a value may change it: the cache kept its own copy."""
    loaded = await cache.get_or_load("k", Loader(lambda: {"roles": ["author"]}), tags=["t"])
    loaded["roles"].append("admin")

    assert {"roles": ["author"]} == await cache.get("k", tags=["t"])


async def test_a_pickle_entry_copied_under_another_key_is_a_miss(
    redis_url: str, namespace: str
) -> None:
    """A signed entry whose bytes are copied to another key, or another namespace, reads as a miss, not as the other value."""
    key = b"a test key of at least 16 bytes"
    cache = AsyncCache.from_url(
        f"{redis_url}?namespace={namespace}", serializer="pickle", pickle_key=key
    )
    other = AsyncCache.from_url(
        f"{redis_url}?namespace={namespace}-other", serializer="pickle", pickle_key=key
    )
    client = cache.backend.client  # type: ignore[attr-defined]
    try:
        # No tags: the entry's header holds no versions, so only the signature can tell.
        assert await cache.set("user:1", {"role": "admin"})
        raw = await client.get(f"{{{namespace}}}:e:user:1")
        await client.set(f"{{{namespace}}}:e:user:2", raw)
        await client.set(f"{{{namespace}-other}}:e:user:1", raw)

        for reader, copied in ((cache, "user:2"), (other, "user:1")):
            assert {"role": "user"} == await reader.get_or_load(
                copied, Loader(lambda: {"role": "user"})
            )
            assert reader.metrics.decode_errors >= 1
            assert {"role": "user"} == await reader.get(copied)  # filled over the copy
        assert {"role": "admin"} == await cache.get("user:1")
    finally:
        await cache.aclose()
        await other.aclose()
