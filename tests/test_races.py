"""The core promises under real concurrency: stale fills, herds, and O(1) tag invalidation.

Several OS processes are started with the "spawn" context; their targets live at module
level here so the children can import them. Everything waits with a timeout.
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from freshcache import AsyncCache, AsyncMemoryBackend, Cache

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


async def test_fill_of_data_read_before_an_invalidation_is_rejected(cache_url: str) -> None:
    """A load that read its source before an invalidation of its tag landed stores nothing, and the next load reads the new data."""
    source = {"item": "old"}
    loading = asyncio.Event()
    invalidated = asyncio.Event()

    async def slow_loader() -> str:
        value = source["item"]
        loading.set()
        await invalidated.wait()
        return value

    async with AsyncCache.from_url(cache_url) as cache:
        load = asyncio.create_task(cache.get_or_load("item", slow_loader, tags=["item"]))
        await asyncio.wait_for(loading.wait(), 5)
        source["item"] = "new"
        await cache.invalidate_tags(["item"])
        invalidated.set()

        assert "old" == await asyncio.wait_for(load, 5)
        assert 1 == cache.metrics.stale_fills_rejected
        assert 0 == cache.metrics.sets
        assert MISS is await cache.get("item", MISS)
        assert MISS is await cache.get("item", MISS, tags=["item"])
        assert "new" == await cache.get_or_load("item", lambda: source["item"], tags=["item"])
        assert "new" == await cache.get("item")


async def test_caller_starting_after_an_invalidation_never_gets_an_older_load(
    cache_url: str,
) -> None:
    """A get_or_load that starts after an invalidation returned never returns data read before that invalidation."""
    source = {"item": "old"}
    loading = asyncio.Event()
    release = asyncio.Event()

    async def slow_loader() -> str:
        value = source["item"]
        loading.set()
        await release.wait()
        return value

    async with AsyncCache.from_url(cache_url) as cache:
        early = asyncio.create_task(cache.get_or_load("item", slow_loader, tags=["item"]))
        await asyncio.wait_for(loading.wait(), 5)
        source["item"] = "new"
        await cache.invalidate_tags(["item"])
        # The write has returned: from here on no reader may see "old".
        late = asyncio.create_task(cache.get_or_load("item", lambda: source["item"], tags=["item"]))
        await asyncio.sleep(0.05)
        release.set()

        assert "old" == await asyncio.wait_for(early, 5)
        assert "new" == await asyncio.wait_for(late, 5)


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


def _herd_process(cache_url: str, tasks: int, barrier: Any, loads: Any, reports: Any) -> None:
    """One process of the herd: ``tasks`` concurrent get_or_load, released by the barrier."""

    async def main() -> None:
        # A pool as large as the herd: the default one is the subject of its own test.
        async with AsyncCache.from_url(cache_url, **_pool_for(cache_url, 2 * tasks)) as cache:

            async def loader() -> dict[str, int]:
                with loads.get_lock():
                    loads.value += 1
                await asyncio.sleep(0.2)
                return {"answer": 42}

            # Open the pool's connections first, so the herd starts together.
            await asyncio.gather(*(cache.get("warm-up") for _ in range(tasks)))
            barrier.wait(60)
            values = await asyncio.gather(
                *(cache.get_or_load("herd", loader, tags=["herd"]) for _ in range(tasks))
            )
            reports.put(sum(value == {"answer": 42} for value in values))

    asyncio.run(main())


@pytest.mark.slow
def test_herd_across_four_processes_runs_the_loader_once(redis_url: str, namespace: str) -> None:
    """500 concurrent misses on one key, 125 in each of 4 processes released together, run the loader once in total."""
    cache_url = f"{redis_url}?namespace={namespace}"
    barrier = SPAWN.Barrier(4)
    loads = SPAWN.Value("i", 0)
    reports = SPAWN.Queue()
    processes = [
        SPAWN.Process(
            target=_herd_process, args=(cache_url, 125, barrier, loads, reports), daemon=True
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
    finally:
        _stop(processes)


async def test_herd_larger_than_the_default_pool_fills_once_without_errors(
    redis_url: str, namespace: str
) -> None:
    """200 concurrent misses on one Redis cache with default options run the loader once, fill the entry, and meet no backend error."""
    loads = 0

    async def loader() -> str:
        nonlocal loads
        loads += 1
        await asyncio.sleep(0.2)
        return "value"

    async with AsyncCache.from_url(f"{redis_url}?namespace={namespace}") as cache:
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

    async def loader() -> str:
        nonlocal loads
        loads += 1
        await asyncio.sleep(0.2)
        return "value"

    cache = AsyncCache(AsyncMemoryBackend())
    values = await asyncio.wait_for(
        asyncio.gather(*(cache.get_or_load("herd", loader, tags=["herd"]) for _ in range(500))),
        30,
    )
    assert ["value"] * 500 == values
    assert 1 == loads


def test_herd_of_threads_on_one_sync_cache_runs_the_loader_once(cache_url: str) -> None:
    """50 threads missing one key of one sync Cache together run the loader once."""
    loads = 0
    counting = threading.Lock()

    def loader() -> str:
        nonlocal loads
        with counting:
            loads += 1
        time.sleep(0.2)
        return "value"

    barrier = threading.Barrier(50)
    with Cache.from_url(cache_url) as cache:

        def read() -> Any:
            cache.get("warm-up")
            barrier.wait(30)
            return cache.get_or_load("herd", loader, tags=["herd"])

        with ThreadPoolExecutor(50) as pool:
            futures = [pool.submit(read) for _ in range(50)]
            values = [future.result(timeout=30) for future in futures]
    assert ["value"] * 50 == values
    assert 1 == loads


# Invalidation is O(1) per tag

ENTRIES = 100_000


def _chunks(keys: list[str], size: int = 10_000) -> Iterator[list[str]]:
    for start in range(0, len(keys), size):
        yield keys[start : start + size]


def _hits(get_many: Callable[[list[str]], dict[str, Any]], keys: list[str]) -> int:
    return sum(len(get_many(chunk)) for chunk in _chunks(keys))


@pytest.mark.slow
def test_invalidating_a_tag_of_100k_entries_is_one_redis_command(
    redis_url: str, namespace: str
) -> None:
    """Invalidating a tag that 100,000 entries depend on sends Redis one command, touches no entry, and every entry misses afterwards."""
    import redis

    from freshcache._redis.wire import encode_entry

    keys = [f"bulk:{i}" for i in range(ENTRIES)]
    raw = redis.Redis.from_url(redis_url, socket_timeout=10)
    try:
        with Cache.from_url(f"{redis_url}?namespace={namespace}") as cache:
            assert cache.set(keys[0], {"i": 0}, tags=["bulk"])
            version = cache.backend.tag_versions(["bulk"])["bulk"]
            serializer = cache.backend.serializer
            # Write the other entries exactly as a fill would, pipelined: fast.
            with raw.pipeline(transaction=False) as pipe:
                for i, key in enumerate(keys[1:], start=1):
                    entry = encode_entry(
                        serializer.name, ["bulk"], [version], serializer.dumps({"i": i})
                    )
                    pipe.set(f"{{{namespace}}}:e:{key}", entry, px=600_000)
                    if i % 10_000 == 0:
                        pipe.execute()
                pipe.execute()
            assert ENTRIES == _hits(cache.get_many, keys)

            cache.invalidate_tags(["warm-up"])  # the script is loaded: no NOSCRIPT round trip
            client = cache.backend.client
            address = client.client_info()["addr"]
            sentinel = f"end-of-invalidation-{uuid.uuid4().hex}"
            with raw.monitor() as monitor:
                cache.invalidate_tags(["bulk"])
                client.echo(sentinel)
                seen = []
                while True:
                    command = monitor.next_command()
                    if sentinel in command["command"]:
                        break
                    seen.append(command)
            sent = [c for c in seen if f"{c['client_address']}:{c['client_port']}" == address]
            in_script = [c for c in seen if c["client_type"] == "lua" and namespace in c["command"]]

            assert ["EVALSHA"] == [c["command"].split(" ")[0].upper() for c in sent]
            assert [] == [c["command"] for c in in_script if f"{{{namespace}}}:e:" in c["command"]]
            assert len(in_script) <= 5
            assert 0 == _hits(cache.get_many, keys)
    finally:
        raw.close()


BACKEND_METHODS = (
    "get",
    "get_many",
    "begin_fill",
    "fill",
    "release_lease",
    "delete",
    "delete_pattern",
    "invalidate_tags",
    "mark_pending",
    "clear_pending",
    "tag_versions",
    "clear",
    "ping",
)


def _recording(method: Callable[..., Any], calls: list[str]) -> Callable[..., Any]:
    """``method``, appending its name to ``calls`` each time it is called."""

    @functools.wraps(method)
    async def recorded(*args: Any, **kwargs: Any) -> Any:
        calls.append(method.__name__)
        return await method(*args, **kwargs)

    return recorded


async def test_invalidating_a_tag_of_100k_entries_is_one_memory_operation() -> None:
    """On the memory backend, invalidating a tag of 100,000 entries is one backend call that removes no entry, and every entry misses afterwards."""
    backend = AsyncMemoryBackend(max_entries=ENTRIES)
    cache = AsyncCache(backend)
    keys = [f"bulk:{i}" for i in range(ENTRIES)]
    for i, key in enumerate(keys):
        await cache.set(key, i, tags=["bulk"])
    assert ENTRIES == len(backend)
    assert ENTRIES == len(await cache.get_many(keys))

    calls: list[str] = []
    for name in BACKEND_METHODS:
        setattr(backend, name, _recording(getattr(backend, name), calls))

    await cache.invalidate_tags(["bulk"])
    assert ["invalidate_tags"] == calls
    assert ENTRIES == len(backend)  # no entry was visited: they just no longer match
    assert {} == await cache.get_many(keys)
