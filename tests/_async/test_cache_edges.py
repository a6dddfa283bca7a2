"""Arguments checked before any I/O, and leases that every failure gives back, on both backends."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Any

import pytest

from freshcache import (
    AsyncCache,
    AsyncMemoryBackend,
    BackendError,
    ConfigurationError,
    InvalidKeyError,
)


@pytest.fixture
async def cache(cache_url: str) -> AsyncIterator[AsyncCache]:
    # A lease nobody releases would make the next caller wait lease_wait, then load
    # without filling: lease_timeouts shows it within five seconds instead of thirty.
    cache = AsyncCache.from_url(cache_url, lease_ttl=30, lease_wait=5)
    await cache.clear()
    yield cache
    await cache.aclose()


class Loader:
    """A loader that counts its calls."""

    def __init__(self, value: object = "loaded") -> None:
        self.value = value
        self.calls = 0

    async def __call__(self) -> object:
        self.calls += 1
        return self.value


def backend_calls(cache: AsyncCache) -> int:
    """Reads and fills the backend was asked for (hits and misses are counted per read)."""
    snapshot = cache.metrics.snapshot()
    return int(snapshot["hits"] + snapshot["misses"] + snapshot["sets"])


BAD_SECONDS = [
    (0, "positive"),
    (-1, "positive"),
    (math.nan, "positive"),
    (math.inf, "at most 31536000"),
    (1e15, "at most 31536000"),
    (366 * 86_400, "at most 31536000"),
    (timedelta(0), "positive"),
    (True, "not bool"),
    ("60", "not str"),
    (None, "not NoneType"),
]


@pytest.mark.parametrize(("ttl", "message"), [s for s in BAD_SECONDS if s[0] is not None])
async def test_bad_ttl_is_refused_before_the_loader_and_the_backend(
    cache: AsyncCache, ttl: Any, message: str
) -> None:
    """A per-call ttl that cannot work raises ConfigurationError naming ttl before any read, load or lease."""
    loader = Loader()

    with pytest.raises(ConfigurationError, match=f"ttl must be .*{message}"):
        await cache.get_or_load("user:1", loader, tags=["user:1"], ttl=ttl)

    assert (0, 0) == (loader.calls, backend_calls(cache))
    assert "loaded" == await cache.get_or_load("user:1", loader, tags=["user:1"], ttl=60)
    assert (1, 0) == (cache.metrics.sets, cache.metrics.lease_timeouts)


@pytest.mark.parametrize(("ttl", "message"), [s for s in BAD_SECONDS if s[0] is not None])
async def test_bad_ttl_is_refused_by_every_writer(
    cache: AsyncCache, ttl: Any, message: str
) -> None:
    """set, set_many and cached refuse the same ttls before anything is stored."""
    with pytest.raises(ConfigurationError, match="ttl must be"):
        await cache.set("k", 1, ttl=ttl)
    with pytest.raises(ConfigurationError, match="ttl must be"):
        await cache.set_many({"a": 1, "b": 2}, ttl=ttl)
    with pytest.raises(ConfigurationError, match="ttl must be"):
        cache.cached(key="k", ttl=ttl)

    assert {} == await cache.get_many(["k", "a", "b"])


@pytest.mark.parametrize("option", ["default_ttl", "lease_ttl", "negative_ttl", "breaker_cooldown"])
@pytest.mark.parametrize(("value", "message"), BAD_SECONDS)
async def test_bad_seconds_are_refused_at_construction(
    option: str, value: Any, message: str
) -> None:
    """Every option in seconds refuses what cannot work, naming the option and the limit."""
    if value is None and option == "negative_ttl":
        return  # None means "no negative TTL"
    with pytest.raises(ConfigurationError, match=f"{option} must be .*{message}"):
        AsyncCache(AsyncMemoryBackend(), **{option: value})


async def test_lease_wait_may_be_zero_but_not_negative_nor_absurd() -> None:
    """lease_wait accepts zero (never wait) and refuses negative, NaN and more than a year."""
    assert 0.0 == AsyncCache(AsyncMemoryBackend(), lease_wait=0).lease_wait
    for value in (-1, math.nan, 1e15, "1"):
        with pytest.raises(ConfigurationError, match="lease_wait must be zero or more"):
            AsyncCache(AsyncMemoryBackend(), lease_wait=value)  # type: ignore[arg-type]


async def test_timedelta_is_accepted_wherever_seconds_are(cache_url: str) -> None:
    """The constructor and every per-call ttl take a timedelta as well as seconds."""
    cache = AsyncCache.from_url(
        cache_url,
        default_ttl=timedelta(minutes=5),
        lease_ttl=timedelta(seconds=10),
        lease_wait=timedelta(0),
        negative_ttl=timedelta(seconds=30),
        breaker_cooldown=timedelta(milliseconds=500),
    )
    try:
        await cache.clear()
        assert (300.0, 10.0, 0.0, 30.0) == (
            cache.default_ttl,
            cache.lease_ttl,
            cache.lease_wait,
            cache.negative_ttl,
        )
        minute = timedelta(minutes=1)
        assert "v" == await cache.get_or_load("a", Loader("v"), ttl=minute)
        assert await cache.set("b", "w", ttl=minute)
        assert 1 == await cache.set_many({"c": "x"}, ttl=minute)

        @cache.cached(key="d:{n}", ttl=minute)
        async def doubled(n: int) -> int:
            return 2 * n

        assert 4 == await doubled(2)
        assert {"a": "v", "b": "w", "c": "x", "d:2": 4} == await cache.get_many(
            ["a", "b", "c", "d:2"]
        )
    finally:
        await cache.aclose()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"ttl_jitter": "0.1"}, "ttl_jitter is a fraction"),
        ({"ttl_jitter": math.nan}, "ttl_jitter is a fraction"),
        ({"cache_none": "yes"}, "cache_none must be True or False"),
        ({"raise_errors": 1}, "raise_errors must be True or False"),
        ({"metrics": {}}, "metrics must be a CacheMetrics"),
    ],
)
async def test_bad_flags_are_refused_at_construction(options: dict[str, Any], message: str) -> None:
    """Options of the wrong type raise ConfigurationError naming them, not a TypeError later."""
    with pytest.raises(ConfigurationError, match=message):
        AsyncCache(AsyncMemoryBackend(), **options)


async def test_bad_call_arguments_are_refused_before_any_io(cache: AsyncCache) -> None:
    """A non-bool cache_none, a loader that is not callable or set_many of a non-mapping fail before the backend is asked."""
    with pytest.raises(ConfigurationError, match="cache_none must be True, False or None"):
        await cache.get_or_load("k", Loader(), cache_none="no")  # type: ignore[call-overload]
    with pytest.raises(ConfigurationError, match="loader must be callable, not str"):
        await cache.get_or_load("k", "not a function")  # type: ignore[call-overload]
    with pytest.raises(ConfigurationError, match="cache_none must be True, False or None"):
        cache.cached(key="k", cache_none=0)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="set_many takes a mapping"):
        await cache.set_many([("a", 1)])  # type: ignore[arg-type]

    assert 0 == backend_calls(cache)


NOT_STRINGS: list[Sequence[Any]] = [[5], [None], ["ok", 5], (b"bytes",), [["nested"]]]


@pytest.mark.parametrize("tags", NOT_STRINGS)
async def test_tags_that_are_not_strings_are_invalid_keys(cache: AsyncCache, tags: Any) -> None:
    """Tags that are not strings raise InvalidKeyError naming the tag, before any I/O, on every method."""
    loader = Loader()

    with pytest.raises(InvalidKeyError, match="tag must be a str"):
        await cache.get_or_load("k", loader, tags=tags)
    with pytest.raises(InvalidKeyError, match="tag must be a str"):
        await cache.get("k", tags=tags)
    with pytest.raises(InvalidKeyError, match="tag must be a str"):
        await cache.set("k", 1, tags=tags)
    with pytest.raises(InvalidKeyError, match="tag must be a str"):
        await cache.set_many({"k": 1}, tags=tags)
    with pytest.raises(InvalidKeyError, match="tag must be a str"):
        await cache.invalidate_tags(tags)

    assert (0, 0) == (loader.calls, backend_calls(cache))


async def test_tags_that_are_not_strings_fail_on_a_hit_too(cache: AsyncCache) -> None:
    """A wrong tag is an error even when the key is cached: the answer does not depend on the cache's state."""
    await cache.set("k", "v", tags=["t"])

    with pytest.raises(InvalidKeyError, match="tag must be a str"):
        await cache.get_or_load("k", Loader(), tags=[5])
    with pytest.raises(InvalidKeyError, match="tag must be a str"):
        await cache.get("k", tags=[5])


class FailingFill(AsyncMemoryBackend):
    """A backend whose next fill fails, as a server would that drops the connection."""

    fills_to_fail = 1

    async def fill(
        self,
        key: str,
        value: Any,
        tags: Sequence[str],
        versions: Sequence[str],
        *,
        ttl: float,
        token: str | None,
    ) -> bool:
        if self.fills_to_fail:
            self.fills_to_fail -= 1
            raise BackendError("connection dropped before the fill was sent")
        return await super().fill(key, value, tags, versions, ttl=ttl, token=token)


@pytest.mark.parametrize("raise_errors", [False, True])
async def test_a_failed_fill_gives_its_lease_back(raise_errors: bool) -> None:
    """After a fill that failed, another caller of the key takes the lease and fills instead of waiting lease_ttl."""
    backend = FailingFill()
    cache = AsyncCache(backend, lease_ttl=30, lease_wait=5, raise_errors=raise_errors)
    # The other caller has a cache of its own on the same backend, as another process would.
    other = AsyncCache(backend, lease_ttl=30, lease_wait=5)
    first = Loader("first")
    if raise_errors:
        with pytest.raises(BackendError, match="connection dropped"):
            await cache.get_or_load("k", first)
    else:
        assert "first" == await cache.get_or_load("k", first)

    assert "second" == await other.get_or_load("k", Loader("second"))
    assert (1, 0) == (other.metrics.sets, other.metrics.lease_timeouts)
    await cache.aclose()


async def test_a_key_that_is_not_a_string_is_refused(cache: AsyncCache) -> None:
    """A key that is not a str raises InvalidKeyError from get_or_load and get, even with a str of it cached."""
    await cache.set("k", "v")
    for key in (5, None, ["k"], b"k"):
        with pytest.raises(InvalidKeyError, match="key must be a str"):
            await cache.get_or_load(key, Loader())  # type: ignore[call-overload]
        with pytest.raises(InvalidKeyError, match="key must be a str"):
            await cache.get(key)  # type: ignore[arg-type]
