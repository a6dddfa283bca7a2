"""The core promises under real concurrency: stale fills and herds.

The races within one process, as tasks and as threads, are written once in
tests/_async/test_races.py; that invalidating a tag costs O(1) is checked in
tests/test_invalidation_cost.py. Several OS processes are started with the "spawn"
context; their targets live at module level here so the children can import them.
Everything waits with a timeout.
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
import random
import threading
from typing import Any

import pytest

from freshcache import AsyncCache, AsyncMemoryBackend, Cache, MemoryBackend

from .concurrency import async_wait_until

SPAWN = multiprocessing.get_context("spawn")
MISS = object()


# A load that began before an invalidation returned may still complete afterwards; the
# callers that joined it in-process get its value although they started after the write.
def _stop(processes: list[Any]) -> None:
    """Kill what is still running; never leave a child behind."""
    for process in processes:
        if process.is_alive():
            process.kill()
    for process in processes:
        process.join(5)


def _pool_for(cache_url: str, connections: int) -> dict[str, int]:
    """Room for ``connections`` concurrent commands on Redis (redis-py's pool stops at 100)."""
    return {"max_connections": connections} if cache_url.startswith("redis") else {}


# The stale-set race


async def test_concurrent_readers_never_see_data_older_than_a_returned_invalidation(
    cache_url: str,
) -> None:
    """Under 200 readers and a writer, no read returns a version older than the last invalidation that returned before it started."""
    keys = ["a", "b"]
    source = dict.fromkeys(keys, 0)
    invalidated = dict.fromkeys(keys, 0)  # the source version each finished invalidation covered
    reads: list[tuple[str, int, int]] = []  # (key, floor when the read started, version read)
    writing = True

    async def loader(key: str) -> dict[str, Any]:
        version = source[key]
        await asyncio.sleep(random.uniform(0.002, 0.02))
        return {"key": key, "version": version}

    async with AsyncCache.from_url(cache_url, **_pool_for(cache_url, 250)) as cache:

        async def reader(seed: int) -> None:
            rng = random.Random(seed)
            while writing:
                key = rng.choice(keys)
                floor = invalidated[key]
                value = await cache.get_or_load(
                    f"item:{key}", functools.partial(loader, key), tags=[f"item:{key}"]
                )
                reads.append((key, floor, value["version"]))
                await asyncio.sleep(rng.uniform(0, 0.002))

        async def writer() -> None:
            nonlocal writing
            rng = random.Random(0)
            try:
                for round_ in range(100):
                    key = keys[round_ % len(keys)]
                    source[key] += 1
                    version = source[key]
                    await asyncio.sleep(rng.uniform(0, 0.002))  # the commit takes a while
                    await cache.invalidate_tags([f"item:{key}"])
                    invalidated[key] = version
                    await asyncio.sleep(rng.uniform(0.001, 0.004))
            finally:
                writing = False

        await asyncio.wait_for(asyncio.gather(writer(), *(reader(seed) for seed in range(200))), 60)

        latest = {
            key: (
                await cache.get_or_load(
                    f"item:{key}", functools.partial(loader, key), tags=[f"item:{key}"]
                )
            )["version"]
            for key in keys
        }
        assert source == latest
        assert len(reads) > 200
        assert cache.metrics.stale_fills_rejected > 0  # loads did overlap invalidations
        stale = [read for read in reads if read[2] < read[1]]
        assert [] == stale


def _load_across_an_invalidation(
    cache_url: str,
    redis_url: str,
    source_key: str,
    started: Any,
    invalidated: Any,
    read_again: Any,
    reports: Any,
) -> None:
    """Process A: a slow load that reads the source, then a fresh read when told."""
    import redis.asyncio

    async def main() -> None:
        source = redis.asyncio.Redis.from_url(redis_url)
        try:
            async with AsyncCache.from_url(cache_url) as cache:

                async def slow_loader() -> str:
                    value = (await source.get(source_key)).decode()
                    started.set()
                    await asyncio.to_thread(invalidated.wait, 30)
                    return value

                async def loader() -> str:
                    return (await source.get(source_key)).decode()

                first = await cache.get_or_load("item", slow_loader, tags=["item"])
                reports.put(("first", first, cache.metrics.stale_fills_rejected))
                await asyncio.to_thread(read_again.wait, 30)
                again = await cache.get_or_load("item", loader, tags=["item"])
                reports.put(("again", again, cache.metrics.loads))
        finally:
            await source.aclose()

    asyncio.run(main())


@pytest.mark.slow
def test_fill_rejected_across_processes(redis_url: str, namespace: str) -> None:
    """Process A's load is overtaken by process B's write and invalidation: A's fill is rejected, and both then read the new data."""
    import redis

    cache_url = f"{redis_url}?namespace={namespace}"
    source_key = f"{{{namespace}}}:source:item"
    source = redis.Redis.from_url(redis_url)
    source.set(source_key, "old")
    started, invalidated, read_again = SPAWN.Event(), SPAWN.Event(), SPAWN.Event()
    reports = SPAWN.Queue()
    process_a = SPAWN.Process(
        target=_load_across_an_invalidation,
        args=(cache_url, redis_url, source_key, started, invalidated, read_again, reports),
        daemon=True,
    )
    process_a.start()
    try:
        with Cache.from_url(cache_url) as cache:
            assert started.wait(30)
            source.set(source_key, "new")
            cache.invalidate_tags(["item"])
            invalidated.set()

            assert ("first", "old", 1) == reports.get(timeout=30)
            assert MISS is cache.get("item", MISS, tags=["item"])

            read_again.set()
            assert ("again", "new", 2) == reports.get(timeout=30)

            def must_not_run() -> str:
                raise AssertionError("process A filled the new value: this read is a hit")

            assert "new" == cache.get_or_load("item", must_not_run, tags=["item"])
            assert "new" == cache.get("item")
        process_a.join(10)
        assert 0 == process_a.exitcode
    finally:
        _stop([process_a])
        source.close()


# A herd of misses


def _herd_process(
    cache_url: str, tasks: int, barrier: Any, loads: Any, waiting: Any, reports: Any
) -> None:
    """One process of the herd: ``tasks`` concurrent get_or_load, released by the barrier.

    The one load, wherever it runs, is held until every process counts itself in
    ``waiting``: its other callers joined its own load, and that one waits on the lease.
    """

    async def main() -> None:
        # A pool as large as the herd: the default one is the subject of its own test.
        async with AsyncCache.from_url(cache_url, **_pool_for(cache_url, 2 * tasks)) as cache:
            leading = False

            async def loader() -> dict[str, int]:
                nonlocal leading
                leading = True
                with loads.get_lock():
                    loads.value += 1
                await async_wait_until(lambda: 4 == waiting.value)
                return {"answer": 42}

            async def herd_waits() -> None:
                await async_wait_until(
                    lambda: (
                        tasks - 1 == cache.metrics.inflight_waits
                        and (leading or 1 <= cache.metrics.lease_waits)
                    )
                )
                with waiting.get_lock():
                    waiting.value += 1

            # Open the pool's connections first, so the herd starts together.
            await asyncio.gather(*(cache.get("warm-up") for _ in range(tasks)))
            barrier.wait(60)
            _, *values = await asyncio.gather(
                herd_waits(),
                *(cache.get_or_load("herd", loader, tags=["herd"]) for _ in range(tasks)),
            )
            reports.put(sum(value == {"answer": 42} for value in values))

    asyncio.run(main())


@pytest.mark.slow
def test_herd_across_four_processes_runs_the_loader_once(redis_url: str, namespace: str) -> None:
    """500 concurrent misses on one key, 125 in each of 4 processes released together, run the loader once in total."""
    cache_url = f"{redis_url}?namespace={namespace}"
    barrier = SPAWN.Barrier(4)
    loads = SPAWN.Value("i", 0)
    waiting = SPAWN.Value("i", 0)
    reports = SPAWN.Queue()
    processes = [
        SPAWN.Process(
            target=_herd_process,
            args=(cache_url, 125, barrier, loads, waiting, reports),
            daemon=True,
        )
        for _ in range(4)
    ]
    for process in processes:
        process.start()
    try:
        correct = [reports.get(timeout=60) for _ in processes]
        for process in processes:
            process.join(10)
        assert [0, 0, 0, 0] == [process.exitcode for process in processes]
        assert [125, 125, 125, 125] == correct
        assert 1 == loads.value
        assert 4 == waiting.value
    finally:
        _stop(processes)


async def test_herd_larger_than_the_default_pool_fills_once_without_errors(
    redis_url: str, namespace: str
) -> None:
    """200 concurrent misses on one Redis cache with default options run the loader once, fill the entry, and meet no backend error."""
    loads = 0

    async with AsyncCache.from_url(f"{redis_url}?namespace={namespace}") as cache:

        async def loader() -> str:
            nonlocal loads
            loads += 1
            await async_wait_until(lambda: 199 == cache.metrics.inflight_waits)  # the herd waits
            return "value"

        values = await asyncio.wait_for(
            asyncio.gather(*(cache.get_or_load("herd", loader, tags=["herd"]) for _ in range(200))),
            30,
        )
        assert ["value"] * 200 == values
        assert 1 == loads
        assert 0 == cache.metrics.backend_errors
        assert "value" == await cache.get("herd", tags=["herd"])


async def test_herd_in_one_process_runs_the_loader_once() -> None:
    """500 concurrent misses on one key of the memory backend run the loader once."""
    loads = 0
    cache = AsyncCache(AsyncMemoryBackend())

    async def loader() -> str:
        nonlocal loads
        loads += 1
        await async_wait_until(lambda: 499 == cache.metrics.inflight_waits)  # the herd waits
        return "value"

    values = await asyncio.wait_for(
        asyncio.gather(*(cache.get_or_load("herd", loader, tags=["herd"]) for _ in range(500))),
        30,
    )
    assert ["value"] * 500 == values
    assert 1 == loads


def test_a_thread_reading_through_get_now_waits_for_a_section_in_progress() -> None:
    """The sync memory backend's get_now takes the lock every operation holds: it never reads half an operation."""
    backend = MemoryBackend()
    get_now = backend.get_now
    assert get_now is not None
    answers: list[Any] = []
    reader = threading.Thread(target=lambda: answers.append(get_now("k", None)))
    with backend._guard:  # another thread's operation, in the middle of its section
        reader.start()
        reader.join(0.2)  # what must not happen has no event to wait for: a short window
        assert reader.is_alive()
        assert [] == answers
    reader.join(5)
    assert not reader.is_alive()
    assert 1 == len(answers)
