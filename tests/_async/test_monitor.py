"""The consistency monitor, on the memory backend and on the real Redis."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from freshcache import (
    AsyncCache,
    AsyncConsistencyMonitor,
    AsyncInvalidationManager,
    AsyncMemoryBackend,
    ConfigurationError,
)

from ..concurrency import AsyncNursery, async_wait_until
from ..redis_server import RedisServer

CLEAN_RUN_TAGS = 5_000  # the 100,000 run is benchmarks/monitor_clean_run.py's
TAGS_PER_WRITE = 100


@pytest.fixture
async def cache(cache_url: str) -> AsyncIterator[AsyncCache]:
    cache = AsyncCache.from_url(cache_url)
    await cache.clear()
    yield cache
    await cache.aclose()


async def plant(cache: AsyncCache, key: str, value: Any, tag: str, version: str) -> None:
    """Write behind the library's back: the tag's old version back, and an entry stored under it."""
    backend = cache.backend
    if isinstance(backend, AsyncMemoryBackend):
        backend._versions[tag] = version
        assert await backend.fill(key, value, [tag], [version], ttl=60, token=None)
        return
    from freshcache._redis.wire import encode_entry

    keys = backend._keys  # type: ignore[attr-defined]
    serializer = backend.serializer  # type: ignore[attr-defined]
    entry = encode_entry(
        serializer.name, [tag], [version], serializer.dumps(value, keys.entry + key)
    )
    await backend.client.set(keys.tag + tag, version)  # type: ignore[attr-defined]
    await backend.client.set(keys.entry + key, entry, px=60_000)  # type: ignore[attr-defined]


async def test_off_by_default(cache: AsyncCache) -> None:
    """A cache has no monitor unless one is made, and its invalidations work as ever."""
    assert cache.monitor is None
    await cache.get_or_load("k", lambda: 1, tags=["t"])
    await cache.invalidate_tags(["t"])
    assert await cache.get("k") is None


async def test_a_clean_run_finds_no_inconsistency(cache: AsyncCache) -> None:
    """Invalidations of 5,000 tags cached under, with fills racing them, all sampled: every check passes."""
    monitor = AsyncConsistencyMonitor(cache, rate=1.0, delay=0)
    manager = AsyncInvalidationManager(cache)

    async def fill(key: str, tags: list[str]) -> None:
        await cache.get_or_load(key, lambda: key, tags=tags)

    for start in range(0, CLEAN_RUN_TAGS, TAGS_PER_WRITE):
        tags = [f"t:{i}" for i in range(start, start + TAGS_PER_WRITE)]
        await fill(f"before:{start}", tags)
        async with AsyncNursery() as nursery:
            nursery.start_soon(manager.invalidate_tags, tags)
            nursery.start_soon(fill, f"during:{start}", tags)  # may land before or after
        await monitor.check_due()
    await monitor.drain()

    snapshot = monitor.snapshot()
    assert (CLEAN_RUN_TAGS, CLEAN_RUN_TAGS, 0) == (
        snapshot["sampled"],
        snapshot["checked"],
        snapshot["inconsistent"],
    )
    assert (0, 0, 0, 0) == (
        snapshot["skipped"],
        snapshot["dropped"],
        snapshot["errors"],
        snapshot["queued"],
    )
    assert 1.0 == snapshot["consistency_ratio"]
    # 5,000 clean checks allow 3.22 nines at 95%: the monitor claims that, not more.
    assert 3.22 == round(snapshot["consistency_nines"], 2)
    assert "no inconsistency in 5,000 checks" in monitor.report()["statement"]
    await manager.aclose()
    await monitor.aclose()


async def test_a_planted_inconsistency_is_caught(
    cache: AsyncCache, caplog: pytest.LogCaptureFixture
) -> None:
    """An entry written behind the library's back under a tag's version from before its invalidation is served, and the monitor reports it."""
    monitor = AsyncConsistencyMonitor(cache, rate=1.0, delay=3600)  # checked when drained
    await cache.get_or_load("user:5", lambda: "old name", tags=["user:5"])
    await cache.get_or_load("user:6", lambda: "kept", tags=["user:6"])
    old_version = (await cache.backend.tag_versions(["user:5"]))["user:5"]
    assert old_version is not None
    await cache.invalidate_tags(["user:5", "user:6"])
    await plant(cache, "user:5", "old name", "user:5", old_version)
    assert "old name" == await cache.get("user:5")  # a reader is served data from before

    with caplog.at_level(logging.ERROR, logger="freshcache"):
        await monitor.drain()

    snapshot = monitor.snapshot()
    assert (2, 1) == (snapshot["checked"], snapshot["inconsistent"])
    assert 0.5 == snapshot["consistency_ratio"]
    report = monitor.report()
    assert [("user:5", old_version)] == [(e["tag"], e["version"]) for e in report["examples"]]
    assert "1 inconsistencies" in report["statement"]
    assert "'user:5' is back at version" in caplog.text
    await monitor.aclose()


async def test_the_check_waits_for_its_delay(cache: AsyncCache) -> None:
    """A sample is not checked before its delay has passed, and is once it is asked for all."""
    monitor = AsyncConsistencyMonitor(cache, rate=1.0, delay=3600)
    await cache.get_or_load("k", lambda: 1, tags=["t"])
    await cache.invalidate_tags(["t"])

    assert 0 == await monitor.check_due()
    assert (1, 0) == (monitor.snapshot()["queued"], monitor.snapshot()["checked"])
    await monitor.drain()
    assert (0, 1) == (monitor.snapshot()["queued"], monitor.snapshot()["checked"])
    await monitor.aclose()


async def test_the_background_worker_checks_after_the_delay(cache: AsyncCache) -> None:
    """Without anyone asking, the worker checks a sample once its short delay has passed."""
    monitor = AsyncConsistencyMonitor(cache, rate=1.0, delay=0.01)
    await cache.get_or_load("k", lambda: 1, tags=["t"])
    await cache.invalidate_tags(["t"])

    await async_wait_until(lambda: monitor.snapshot()["checked"] == 1)
    assert 0 == monitor.snapshot()["inconsistent"]
    await monitor.aclose()


async def test_one_invalidation_in_period_is_sampled(cache: AsyncCache) -> None:
    """At rate 0.25, exactly every fourth invalidation is sampled: deterministic, no randomness."""
    monitor = AsyncConsistencyMonitor(cache, rate=0.25, delay=3600)
    for i in range(100):
        await cache.invalidate_tags([f"t:{i}"])

    assert 4 == monitor.period
    assert (25, 25) == (monitor.snapshot()["sampled"], monitor.snapshot()["skipped"])
    await monitor.aclose()


async def test_tags_without_a_version_are_skipped(cache: AsyncCache) -> None:
    """A tag nothing was cached under has no version before: skipped, not counted as a check."""
    monitor = AsyncConsistencyMonitor(cache, rate=1.0, delay=0)
    await cache.get_or_load("k", lambda: 1, tags=["cached"])
    await cache.invalidate_tags(["cached", "never-read"])
    await monitor.drain()

    snapshot = monitor.snapshot()
    assert (2, 1, 1) == (snapshot["sampled"], snapshot["checked"], snapshot["skipped"])
    await monitor.aclose()


async def test_a_full_queue_drops_samples_and_never_blocks_a_write(cache: AsyncCache) -> None:
    """With room for two samples, the other three are dropped and counted; every invalidation applies."""
    monitor = AsyncConsistencyMonitor(cache, rate=1.0, delay=3600, max_queued=2)
    for i in range(5):
        await cache.get_or_load(f"k:{i}", lambda: 1, tags=[f"t:{i}"])
        await cache.invalidate_tags([f"t:{i}"])
        assert await cache.get(f"k:{i}") is None

    snapshot = monitor.snapshot()
    assert (5, 2, 3) == (snapshot["sampled"], snapshot["queued"], snapshot["dropped"])
    await monitor.aclose()


async def test_close_detaches_and_a_cache_takes_one_monitor(cache: AsyncCache) -> None:
    """A second monitor on a cache is refused; after close the cache has none and samples nothing."""
    monitor = AsyncConsistencyMonitor(cache, rate=1.0)
    with pytest.raises(ConfigurationError, match="has a consistency monitor already"):
        AsyncConsistencyMonitor(cache)
    await monitor.aclose()

    assert cache.monitor is None
    await cache.invalidate_tags(["t"])
    assert 0 == monitor.snapshot()["sampled"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rate": 0}, "rate must be a number in"),
        ({"rate": 1.5}, "rate must be a number in"),
        ({"rate": "1"}, "rate must be a number in"),
        ({"delay": -1}, "delay"),
        ({"max_queued": 0}, "max_queued must be"),
        ({"batch": 2.5}, "batch must be"),
        ({"max_examples": -1}, "max_examples must be a whole number of at least 0"),
    ],
)
async def test_bad_options_are_refused(options: dict[str, Any], message: str) -> None:
    """Each bad option is refused at construction, naming it."""
    cache = AsyncCache(AsyncMemoryBackend())
    with pytest.raises(ConfigurationError, match=message):
        AsyncConsistencyMonitor(cache, **options)
    assert cache.monitor is None


async def test_a_check_that_cannot_read_stays_queued(namespace: str) -> None:
    """With Redis stopped, a due check fails and stays queued (counted as an error); once Redis is back it passes."""
    server = RedisServer(persistent=True)
    server.start()
    try:
        cache = AsyncCache.from_url(f"{server.url}?namespace={namespace}", breaker_cooldown=0.01)
        monitor = AsyncConsistencyMonitor(cache, rate=1.0, delay=3600)
        await cache.get_or_load("k", lambda: 1, tags=["t"])
        await cache.invalidate_tags(["t"])
        server.stop()

        assert 0 == await monitor.check_due(everything=True)
        assert (1, 1, 0) == (
            monitor.snapshot()["errors"],
            monitor.snapshot()["queued"],
            monitor.snapshot()["checked"],
        )
        server.start()
        await async_wait_until(lambda: not cache.breaker.is_open)
        await monitor.drain()
        assert (1, 0) == (monitor.snapshot()["checked"], monitor.snapshot()["inconsistent"])
        await monitor.aclose()
        await cache.aclose()
    finally:
        server.remove()


async def test_a_strict_write_is_checked_after_its_commit_and_not_after_a_rollback(
    cache: AsyncCache,
) -> None:
    """A sampled strict write reads its versions before its marks; its commit is checked, its rollback (which restores them) is not."""
    monitor = AsyncConsistencyMonitor(cache, rate=1.0, delay=3600)
    manager = AsyncInvalidationManager(cache)
    await cache.get_or_load("a", lambda: 1, tags=["committed"])
    await cache.get_or_load("b", lambda: 1, tags=["rolled-back"])
    old = (await cache.backend.tag_versions(["rolled-back"]))["rolled-back"]

    committed = await manager.begin(["committed"])
    rolled_back = await manager.begin(["rolled-back"])
    await manager.commit(committed)
    await manager.abort(rolled_back)
    await monitor.drain()

    snapshot = monitor.snapshot()
    assert (2, 1, 1, 0) == (
        snapshot["sampled"],
        snapshot["checked"],
        snapshot["skipped"],
        snapshot["inconsistent"],
    )
    assert old == (await cache.backend.tag_versions(["rolled-back"]))["rolled-back"]
    assert 1 == await cache.get("b")  # the rollback gave the version back: a hit, rightly
    await manager.aclose()
    await monitor.aclose()


async def test_a_planted_version_after_a_strict_commit_is_caught(cache: AsyncCache) -> None:
    """A tag's version from before a strict write, set again behind the library's back after the commit, is reported."""
    monitor = AsyncConsistencyMonitor(cache, rate=1.0, delay=3600)
    manager = AsyncInvalidationManager(cache)
    await cache.get_or_load("user:1", lambda: "old", tags=["user:1"])
    old = (await cache.backend.tag_versions(["user:1"]))["user:1"]
    assert old is not None

    await manager.commit(await manager.begin(["user:1"]))
    await plant(cache, "user:1", "old", "user:1", old)
    await monitor.drain()

    assert (1, 1) == (monitor.snapshot()["checked"], monitor.snapshot()["inconsistent"])
    await manager.aclose()
    await monitor.aclose()
