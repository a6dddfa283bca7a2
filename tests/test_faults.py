"""The core promises under real faults: a lease holder killed mid-load, a Redis server killed."""

from __future__ import annotations

import asyncio
import inspect
import multiprocessing
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from freshcache import AsyncCache, BackendError, Cache

SPAWN = multiprocessing.get_context("spawn")
MISS = object()


async def _(result: Any) -> Any:
    """The value of a call on either API: awaited when the cache is an AsyncCache."""
    return await result if inspect.isawaitable(result) else result


# A lease holder killed mid-load


def _load_forever(cache_url: str, started: Any) -> None:
    """Process A: take the lease on "report" and never finish the load."""

    async def main() -> None:
        async with AsyncCache.from_url(cache_url, lease_ttl=1.0) as cache:

            async def never_returns() -> str:
                started.set()
                await asyncio.sleep(3600)
                return "never"

            await cache.get_or_load("report", never_returns, tags=["report"])

    asyncio.run(main())


@pytest.mark.slow
def test_a_killed_lease_holder_is_taken_over_within_the_lease_ttl(
    redis_url: str, namespace: str
) -> None:
    """When the process holding a key's lease is killed mid-load, another caller takes the lease over once it expires, and its own result is served."""
    cache_url = f"{redis_url}?namespace={namespace}"
    lease_ttl = 1.0
    started = SPAWN.Event()
    holder = SPAWN.Process(target=_load_forever, args=(cache_url, started), daemon=True)
    holder.start()
    try:
        assert started.wait(30)
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(10)
        assert -signal.SIGKILL == holder.exitcode

        # lease_wait longer than lease_ttl: waiting ends by take-over, not by giving up.
        with Cache.from_url(cache_url, lease_ttl=lease_ttl, lease_wait=10.0) as cache:
            began = time.monotonic()
            value = cache.get_or_load("report", lambda: "taken over", tags=["report"])
            elapsed = time.monotonic() - began

            assert "taken over" == value
            assert elapsed < lease_ttl + 1.0
            assert 1 == cache.metrics.lease_waits  # the dead holder's lease was still there
            assert 0 == cache.metrics.lease_timeouts
            assert 1 == cache.metrics.sets
            assert "taken over" == cache.get("report", tags=["report"])
    finally:
        if holder.is_alive():
            holder.kill()
        holder.join(5)


# Redis stopped mid-run


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """A redis-server of the test's own on a loopback port, started and killed by pid."""

    def __init__(self, port: int, directory: Path) -> None:
        self.port = port
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        import redis

        self.process = subprocess.Popen(
            [
                *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(self.directory)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2, socket_timeout=0.2)
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.exceptions.ConnectionError:
                    if time.monotonic() > deadline or self.process.poll() is not None:
                        raise
                    time.sleep(0.02)
        finally:
            client.close()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis server this test may kill and restart; always stopped afterwards."""
    server = RedisServer(_free_port(), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.mark.slow
@pytest.mark.parametrize("api", ["async", "sync"])
async def test_reads_survive_a_redis_outage_and_recover(own_redis: RedisServer, api: str) -> None:
    """While Redis is down get_or_load answers from the loader, quickly and without raising, counting backend errors; raise_errors=True raises BackendError; once Redis is back the same cache fills and hits again."""
    cache_class = AsyncCache if api == "async" else Cache
    url = f"redis://127.0.0.1:{own_redis.port}/0?namespace=outage"
    cache: Any = cache_class.from_url(url)
    strict: Any = cache_class.from_url(url, raise_errors=True)
    try:
        assert {"v": 1} == await _(cache.get_or_load("user:1", lambda: {"v": 1}, tags=["user:1"]))
        assert {"v": 1} == await _(cache.get("user:1", tags=["user:1"]))
        assert 0 == cache.metrics.backend_errors

        own_redis.kill()

        errors = cache.metrics.backend_errors
        for attempt in range(5):
            began = time.monotonic()
            value = await _(
                cache.get_or_load("user:1", lambda n=attempt: {"db": n}, tags=["user:1"])
            )
            elapsed = time.monotonic() - began
            assert {"db": attempt} == value
            assert elapsed < 1.0
            assert cache.metrics.backend_errors > errors
            errors = cache.metrics.backend_errors
        began = time.monotonic()
        assert MISS is await _(cache.get("user:1", MISS, tags=["user:1"]))
        assert time.monotonic() - began < 1.0
        assert errors + 1 == cache.metrics.backend_errors
        errors = cache.metrics.backend_errors

        began = time.monotonic()
        with pytest.raises(BackendError):
            await _(strict.get_or_load("user:1", lambda: {"db": -1}, tags=["user:1"]))
        assert time.monotonic() - began < 1.0

        own_redis.start()

        sets = cache.metrics.sets
        assert {"v": 2} == await _(cache.get_or_load("user:1", lambda: {"v": 2}, tags=["user:1"]))
        assert sets + 1 == cache.metrics.sets
        assert {"v": 2} == await _(cache.get("user:1", tags=["user:1"]))
        assert errors == cache.metrics.backend_errors
    finally:
        for each in (cache, strict):
            await _(each.aclose() if api == "async" else each.close())
