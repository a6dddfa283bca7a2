"""The cache's policy, on the memory backend and on the real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from freshcache import (
    AsyncCache,
    BackendError,
    ConfigurationError,
    InvalidKeyError,
    SerializationError,
)


@pytest.fixture
async def cache(cache_url: str) -> AsyncIterator[AsyncCache]:
    cache = AsyncCache.from_url(cache_url)
    await cache.clear()
    yield cache
    await cache.aclose()


class Counter:
    """A loader that counts its calls and returns the next value of a sequence."""

    def __init__(self, *values: object) -> None:
        self.values = list(values)
        self.calls = 0

    async def __call__(self) -> object:
        value = self.values[min(self.calls, len(self.values) - 1)]
        self.calls += 1
        return value


async def test_get_or_load_loads_once_then_hits(cache: AsyncCache) -> None:
    """A miss runs the loader and fills; the next call is a hit that does not load."""
    loader = Counter({"name": "ada"})

    assert {"name": "ada"} == await cache.get_or_load("user:1", loader, tags=["user:1"])
    assert {"name": "ada"} == await cache.get_or_load("user:1", loader, tags=["user:1"])

    assert 1 == loader.calls
    snapshot = cache.metrics.snapshot()
    assert (1, 1, 1, 1) == (
        snapshot["hits"],
        snapshot["misses"],
        snapshot["loads"],
        snapshot["sets"],
    )
    assert 0.5 == snapshot["hit_rate"]


async def test_get_returns_default_on_miss(cache: AsyncCache) -> None:
    """get answers the default for a missing key, and the value once set."""
    assert "nothing" == await cache.get("user:9", "nothing")
    assert await cache.set("user:9", [1, 2])
    assert [1, 2] == await cache.get("user:9")


async def test_tags_hint_does_not_change_the_answer(cache: AsyncCache) -> None:
    """get with the right tags, other tags or none at all returns the same hit."""
    await cache.set("k", "v", tags=["a", "b"])

    assert "v" == await cache.get("k", tags=["a", "b"])
    assert "v" == await cache.get("k", tags=["b", "a"])
    assert "v" == await cache.get("k", tags=["a"])
    assert "v" == await cache.get("k")


async def test_invalidate_tags_turns_dependents_into_misses(cache: AsyncCache) -> None:
    """After invalidate_tags, every entry depending on the tag misses; others stay."""
    await cache.set("user:1", 1, tags=["user:1", "users"])
    await cache.set("user:2", 2, tags=["user:2", "users"])
    await cache.set("post:1", 3, tags=["post:1"])

    await cache.invalidate_tags(["users"])

    assert {"post:1": 3} == await cache.get_many(["user:1", "user:2", "post:1"])
    assert 1 == cache.metrics.tag_invalidations


async def test_reload_after_invalidation_sees_new_data(cache: AsyncCache) -> None:
    """A read after an invalidation loads again and caches the new value."""
    loader = Counter("old", "new")
    await cache.get_or_load("k", loader, tags=["t"])

    await cache.invalidate_tags(["t"])

    assert "new" == await cache.get_or_load("k", loader, tags=["t"])
    assert "new" == await cache.get("k", tags=["t"])


async def test_fill_from_before_an_invalidation_is_rejected(cache: AsyncCache) -> None:
    """A load that an invalidation overtakes returns its value but never stores it."""

    async def loader() -> str:
        await cache.invalidate_tags(["t"])  # a writer commits while we read
        return "stale"

    assert "stale" == await cache.get_or_load("k", loader, tags=["t"])

    assert None is await cache.get("k")
    assert 1 == cache.metrics.stale_fills_rejected
    assert "fresh" == await cache.get_or_load("k", Counter("fresh"), tags=["t"])


async def test_a_key_deleted_during_its_load_never_stores_the_old_value(cache: AsyncCache) -> None:
    """A load that read old data before its key was deleted returns it to its caller, but never stores it."""

    async def loader() -> str:
        await cache.delete("k")  # a writer deletes the key while we read
        return "old"

    assert "old" == await cache.get_or_load("k", loader)

    assert None is await cache.get("k")
    assert 1 == cache.metrics.stale_fills_rejected
    assert "new" == await cache.get_or_load("k", Counter("new"))


async def test_set_many_and_get_many(cache: AsyncCache) -> None:
    """set_many stores every item under the tags; get_many returns only the hits."""
    assert 2 == await cache.set_many({"a": 1, "b": 2}, tags=["letters"])

    assert {"a": 1, "b": 2} == await cache.get_many(["a", "b", "c"])
    await cache.invalidate_tags(["letters"])
    assert {} == await cache.get_many(["a", "b"])


async def test_delete_and_invalidate_keys(cache: AsyncCache) -> None:
    """delete removes entries by key and answers how many existed."""
    await cache.set_many({"a": 1, "b": 2})

    assert 1 == await cache.delete("a", "zzz")
    assert 1 == await cache.invalidate_keys(["b"])
    assert {} == await cache.get_many(["a", "b"])
    assert 3 == cache.metrics.key_invalidations  # keys asked for, found or not


async def test_invalidate_pattern(cache: AsyncCache) -> None:
    """A glob pattern deletes the keys it matches and no others."""
    await cache.set_many({"user:1": 1, "user:2": 2, "users": 3, "challenge:1": 4})

    assert 2 == await cache.invalidate_pattern("user:*")

    assert {"users": 3, "challenge:1": 4} == await cache.get_many(
        ["user:1", "user:2", "users", "challenge:1"]
    )
    assert 1 == cache.metrics.pattern_invalidations


async def test_pattern_star_alone_needs_confirmation(cache: AsyncCache) -> None:
    """'*' alone is refused without confirm_all, and clears every entry with it."""
    await cache.set("a", 1)

    with pytest.raises(InvalidKeyError, match="confirm_all=True"):
        await cache.invalidate_pattern("*")
    assert 1 == await cache.get("a")

    assert 1 == await cache.invalidate_pattern("*", confirm_all=True)
    assert None is await cache.get("a")


async def test_none_is_not_cached_by_default(cache: AsyncCache) -> None:
    """A loader answering None loads again next time unless negative caching is on."""
    loader = Counter(None)

    assert None is await cache.get_or_load("user:404", loader)
    assert None is await cache.get_or_load("user:404", loader)

    assert 2 == loader.calls


async def test_negative_caching_is_invalidated_by_the_insert(cache: AsyncCache) -> None:
    """With cache_none, "not found" is cached until the tag an insert bumps moves."""
    loader = Counter(None, {"id": 404})

    assert None is await cache.get_or_load("user:404", loader, tags=["user:404"], cache_none=True)
    assert None is await cache.get_or_load("user:404", loader, tags=["user:404"], cache_none=True)
    assert 1 == loader.calls

    await cache.invalidate_tags(["user:404"])  # the row was inserted

    assert {"id": 404} == await cache.get_or_load(
        "user:404", loader, tags=["user:404"], cache_none=True
    )


async def test_negative_ttl_bounds_cached_none(cache_url: str) -> None:
    """negative_ttl gives cached None values their own, shorter lifetime."""
    cache = AsyncCache.from_url(cache_url, cache_none=True, negative_ttl=0.05)
    loader = Counter(None)
    try:
        await cache.get_or_load("gone", loader)
        await cache.get_or_load("gone", loader)
        assert 1 == loader.calls
        from freshcache._synchronization import async_sleep

        await async_sleep(0.2)
        await cache.get_or_load("gone", loader)
        assert 2 == loader.calls
    finally:
        await cache.aclose()


async def test_loader_error_propagates_and_releases_the_lease(cache: AsyncCache) -> None:
    """A failing loader's exception reaches the caller, is counted, and the next call loads at once."""

    async def failing() -> None:
        raise LookupError("database said no")

    with pytest.raises(LookupError, match="database said no"):
        await cache.get_or_load("k", failing)

    assert 1 == cache.metrics.load_errors
    # The lease was released: no wait for lease_ttl (10 s) before loading again.
    assert "ok" == await cache.get_or_load("k", Counter("ok"))
    assert 0 == cache.metrics.lease_waits


async def test_pending_tag_bypasses_the_cache(cache: AsyncCache) -> None:
    """While a writer holds a tag, reads go to the loader and nothing is filled."""
    loader = Counter("during", "after")
    await cache.backend.mark_pending(["t"], token="writer", ttl=30)

    assert "during" == await cache.get_or_load("k", loader, tags=["t"])
    assert None is await cache.get("k")
    assert 1 == cache.metrics.pending_bypasses

    await cache.backend.clear_pending(["t"], token="writer", committed=True)

    assert "after" == await cache.get_or_load("k", loader, tags=["t"])
    assert "after" == await cache.get("k", tags=["t"])


async def test_set_refuses_while_a_tag_is_pending(cache: AsyncCache) -> None:
    """set answers False, and stores nothing, while a writer holds one of its tags."""
    await cache.backend.mark_pending(["t"], token="writer", ttl=30)

    assert not await cache.set("k", 1, tags=["t"])
    assert None is await cache.get("k")


async def test_invalid_key_fails_before_loading(cache: AsyncCache) -> None:
    """A bad key raises InvalidKeyError naming the problem, and the loader never runs."""
    loader = Counter(1)

    with pytest.raises(InvalidKeyError, match="' ' at position 4"):
        await cache.get_or_load("user 1", loader)
    with pytest.raises(InvalidKeyError, match="must not be empty"):
        await cache.set("", 1)
    with pytest.raises(InvalidKeyError, match="tag 'a\\*'"):
        await cache.get_or_load("k", loader, tags=["a*"])

    assert 0 == loader.calls


async def test_bad_keys_and_tags_are_refused_on_every_read(cache: AsyncCache) -> None:
    """Reads refuse a non-str key, an invalid key, and a bare string given as tags."""
    loader = Counter(1)

    with pytest.raises(InvalidKeyError, match="key must be a str, not int"):
        await cache.get_or_load(42, loader)  # type: ignore[arg-type]
    with pytest.raises(InvalidKeyError, match="key must be a str, not int"):
        await cache.get(42)  # type: ignore[arg-type]
    with pytest.raises(InvalidKeyError, match="' ' at position 3"):
        await cache.get("bad key")
    with pytest.raises(InvalidKeyError, match="not the string 'user:1'"):
        await cache.get_or_load("k", loader, tags="user:1")
    with pytest.raises(InvalidKeyError, match="not the string 'user:1'"):
        await cache.get("k", tags="user:1")  # type: ignore[arg-type]
    with pytest.raises(InvalidKeyError, match="not the string 'ab'"):
        await cache.get_many("ab")
    with pytest.raises(InvalidKeyError, match="' ' at position 1"):
        await cache.get_many(["a b"])

    assert 0 == loader.calls


async def test_cached_decorator_fills_templates_from_arguments(cache: AsyncCache) -> None:
    """cached builds the key and tags from the call's arguments, defaults included."""
    calls: list[tuple[int, str]] = []

    @cache.cached(key="user:{user_id}:progress:{period}", tags=["user:{user_id}"], ttl=60)
    async def progress(user_id: int, period: str = "week") -> dict[str, object]:
        calls.append((user_id, period))
        return {"user": user_id, "period": period}

    assert {"user": 2, "period": "week"} == await progress(2)
    assert {"user": 2, "period": "week"} == await progress(user_id=2)
    assert {"user": 2, "period": "day"} == await progress(2, "day")
    assert [(2, "week"), (2, "day")] == calls
    assert "user:2:progress:week" == progress.key_for(2)  # type: ignore[attr-defined]

    await cache.invalidate_tags(["user:2"])
    await progress(2)
    assert 3 == len(calls)

    assert 1 == await progress.invalidate(2, "day")  # type: ignore[attr-defined]
    await progress(2, "day")
    assert 4 == len(calls)


async def test_cached_rejects_unknown_placeholders(cache: AsyncCache) -> None:
    """A template naming a parameter the function lacks fails at decoration time."""
    with pytest.raises(ConfigurationError, match="user_id"):

        @cache.cached(key="user:{user_id}")
        async def progress(uid: int) -> int:
            return uid


async def test_ttl_jitter_spreads_lifetimes(cache_url: str) -> None:
    """With jitter j, a TTL t becomes a value in (t * (1 - j), t], not always t."""
    cache = AsyncCache.from_url(cache_url, ttl_jitter=0.5)
    ttls = {cache._ttl(100.0) for _ in range(200)}
    await cache.aclose()

    assert all(50.0 < ttl <= 100.0 for ttl in ttls)
    assert len(ttls) > 100


async def test_entries_expire_after_their_ttl(cache: AsyncCache) -> None:
    """An entry is a miss once its TTL has passed."""
    from freshcache._synchronization import async_sleep

    await cache.set("k", 1, ttl=0.05)
    assert 1 == await cache.get("k")

    await async_sleep(0.2)

    assert None is await cache.get("k")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"default_ttl": 0}, "default_ttl must be a positive number"),
        ({"lease_ttl": -1}, "lease_ttl must be a positive number"),
        ({"ttl_jitter": 1.5}, "ttl_jitter is a fraction"),
        ({"lease_wait": -1}, "lease_wait must be zero or more"),
        ({"max_entries": 0}, "max_entries must be at least 1"),
    ],
)
async def test_bad_options_are_refused(options: dict[str, object], message: str) -> None:
    """Options that cannot work raise ConfigurationError saying which and why."""
    with pytest.raises(ConfigurationError, match=message):
        AsyncCache.from_url("memory://", **options)


async def test_bad_urls_are_refused() -> None:
    """An unknown scheme or option in a cache URL is a ConfigurationError."""
    with pytest.raises(ConfigurationError, match="unknown cache URL scheme 'memcached'"):
        AsyncCache.from_url("memcached://localhost")
    with pytest.raises(ConfigurationError, match="must look like"):
        AsyncCache.from_url("localhost:6379")
    with pytest.raises(ConfigurationError, match="got colour"):
        AsyncCache.from_url("memory://?colour=red")


async def test_unencodable_value_raises_and_frees_the_lease(redis_url: str, namespace: str) -> None:
    """With raise_errors, a value the serializer cannot encode raises SerializationError; the key is not left leased."""
    cache = AsyncCache.from_url(f"{redis_url}?namespace={namespace}", raise_errors=True)
    try:
        with pytest.raises(SerializationError, match="object is not supported by the json"):
            await cache.get_or_load("k", Counter({1, object()}))
        assert "ok" == await cache.get_or_load("k", Counter("ok"))
        assert 0 == cache.metrics.lease_waits
    finally:
        await cache.aclose()


async def test_unreachable_backend_serves_reads_and_raises_on_invalidation() -> None:
    """With nothing listening, reads fall back to the loader, then skip the backend for a while; invalidations raise BackendError."""
    cache = AsyncCache.from_url("redis://127.0.0.1:1/0", connect_timeout=0.2, retries=0)
    try:
        assert "from the database" == await cache.get_or_load("k", Counter("from the database"))
        assert None is await cache.get("k")  # not even sent: the breaker opened on the failure
        # Skipped: the fill after the failed read, and this read.
        assert (1, 2) == (cache.metrics.backend_errors, cache.metrics.backend_skips)

        with pytest.raises(BackendError, match="circuit breaker"):
            await cache.invalidate_tags(["t"])
    finally:
        await cache.aclose()


async def test_raise_errors_surfaces_backend_failures() -> None:
    """raise_errors=True turns a failed read into a BackendError for the caller."""
    cache = AsyncCache.from_url(
        "redis://127.0.0.1:1/0", connect_timeout=0.2, retries=0, raise_errors=True
    )
    try:
        with pytest.raises(BackendError, match="redis"):
            await cache.get_or_load("k", Counter(1))
    finally:
        await cache.aclose()


async def test_an_entry_that_cannot_be_decoded_reads_as_a_miss(
    redis_url: str, namespace: str
) -> None:
    """After a pickle key rotation, old entries are misses (counted), the loader runs, and the fill overwrites them."""
    url = f"{redis_url}?namespace={namespace}"
    old = AsyncCache.from_url(url, serializer="pickle", pickle_key=b"old-key-0123456789")
    new = AsyncCache.from_url(url, serializer="pickle", pickle_key=b"new-key-0123456789")
    try:
        await old.set("k", {"signed": "old"}, tags=["t"])

        assert {"loaded": 1} == await new.get_or_load("k", Counter({"loaded": 1}), tags=["t"])
        assert new.metrics.decode_errors >= 1
        assert (0, 1) == (new.metrics.backend_errors, new.metrics.sets)  # filled over it
        assert not new.breaker.open_until  # the server is fine
        assert {"loaded": 1} == await new.get("k", tags=["t"])
    finally:
        await old.aclose()
        await new.aclose()
