"""Hits served through a backend's get_now: counted, skipped and failed exactly as awaited reads."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from freshcache import AsyncCache, AsyncMemoryBackend, BackendError, CacheMetrics


class Recorder:
    """Wraps a backend's get_now, counting the calls that reach it."""

    def __init__(self, get_now: Callable[[str, Sequence[str] | None], Any]) -> None:
        self.get_now = get_now
        self.calls = 0

    def __call__(self, key: str, tags: Sequence[str] | None) -> Any:
        self.calls += 1
        return self.get_now(key, tags)


async def loader() -> str:
    return "loaded"


def counts(metrics: CacheMetrics) -> tuple[int, ...]:
    return (
        metrics.hits,
        metrics.misses,
        metrics.loads,
        metrics.backend_skips,
        metrics.get_latency.count,
    )


async def reads(cache: AsyncCache) -> None:
    """Hits, misses and an invalidation through get_or_load and get."""
    for _ in range(7):
        assert "loaded" == await cache.get_or_load("k", loader, tags=["t"], ttl=60)
    assert "loaded" == await cache.get("k", tags=["t"])
    assert "loaded" == await cache.get("k")
    assert None is await cache.get("absent")
    await cache.invalidate_tags(["t"])
    for _ in range(5):
        assert "loaded" == await cache.get_or_load("k", loader, tags=["t"], ttl=60)
    assert {"k": "loaded"} == await cache.get_many(["k", "absent"])


def test_the_memory_backend_offers_get_now_unless_a_subclass_overrides_get() -> None:
    """get_now is the memory backend's read; a subclass's own get must keep seeing every read."""

    class Counting(AsyncMemoryBackend):
        async def get(self, key: str, tags: Sequence[str] | None = None) -> Any:
            return await super().get(key, tags)

    assert AsyncMemoryBackend().get_now is not None
    assert Counting().get_now is None


async def test_hits_and_misses_count_as_through_get() -> None:
    """A cache reading through get_now counts hits, misses, loads and sampled latencies as one awaiting get does."""
    through_now = AsyncMemoryBackend()
    through_get = AsyncMemoryBackend()
    recorder = through_now.get_now = Recorder(through_now.get_now)  # type: ignore[arg-type]
    through_get.get_now = None
    now = AsyncCache(through_now, metrics=CacheMetrics(get_sample_every=3))
    awaited = AsyncCache(through_get, metrics=CacheMetrics(get_sample_every=3))

    await reads(now)
    await reads(awaited)

    assert counts(awaited.metrics) == counts(now.metrics)
    assert (13, 4, 2, 0) == counts(now.metrics)[:4]
    assert 0 < now.metrics.get_latency.count
    assert 0 < recorder.calls


@pytest.mark.parametrize("why", ["suspended", "breaker"])
async def test_get_now_is_not_asked_while_reads_skip_the_cache(why: str) -> None:
    """While reads are suspended or the breaker is open, hits go to the loader without asking get_now."""
    backend = AsyncMemoryBackend()
    recorder = backend.get_now = Recorder(backend.get_now)  # type: ignore[arg-type]
    cache = AsyncCache(backend)
    await cache.get_or_load("k", loader, tags=["t"])
    asked = recorder.calls
    if why == "suspended":
        cache.suspend_reads("queue")
    else:
        cache.breaker.open_until = time.monotonic() + 60

    assert "again" == await cache.get_or_load("k", lambda: "again", tags=["t"])
    assert None is await cache.get("k")

    assert asked == recorder.calls
    assert 2 <= cache.metrics.backend_skips


@pytest.mark.parametrize("raise_errors", [False, True])
async def test_a_failing_get_now_fails_as_get_would(raise_errors: bool) -> None:
    """A BackendError from get_now is counted, opens the breaker and serves the loader (or raises)."""
    backend = AsyncMemoryBackend()

    def failing(key: str, tags: Sequence[str] | None) -> Any:
        raise BackendError("the store went away")

    backend.get_now = failing
    cache = AsyncCache(backend, raise_errors=raise_errors)

    if raise_errors:
        with pytest.raises(BackendError, match="went away"):
            await cache.get_or_load("k", loader, tags=["t"])
    else:
        assert "loaded" == await cache.get_or_load("k", loader, tags=["t"])
    assert 1 == cache.metrics.backend_errors
    assert cache.breaker.open_until
