"""A cache used on both sides of a fork (gunicorn's preloaded app, multiprocessing's workers).

The child must never use its parent's sockets: two processes reading replies off one
socket get each other's. After a fork the child's first hit opens a connection of its
own, and the parent keeps reading on its connection, untouched.
"""

from __future__ import annotations

import asyncio
import os
import warnings
from collections.abc import Callable

import pytest

from freshcache import AsyncCache, Cache
from freshcache._redis.connections import pack_text

CLIENT_ID = pack_text("CLIENT", ["ID"])


def in_child(work: Callable[[], str]) -> str:
    """Fork; run ``work`` in the child and return what it reported (or its error)."""
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12: fork with threads running
        pid = os.fork()
    if pid == 0:  # the child: report, then leave without running the parent's cleanup
        code = 1
        try:
            report = work()
            code = 0
        except BaseException as exc:
            report = f"{type(exc).__name__}: {exc}"
        os.write(write_end, report.encode())
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        report = reader.read().decode()
    _, status = os.waitpid(pid, 0)
    assert 0 == os.waitstatus_to_exitcode(status), report
    return report


@pytest.mark.slow
def test_a_forked_child_opens_its_own_connection_and_leaves_the_parents_alone(
    redis_url: str, namespace: str
) -> None:
    """Sync: after a fork the child hits on a connection of its own, and the parent goes on hitting on the same connection as before."""
    cache = Cache.from_url(f"{redis_url}?namespace={namespace}")
    try:
        assert "v" == cache.get_or_load("k", lambda: "v", tags=["t"])
        pool = cache.backend._direct
        parent_id = pool.call(CLIENT_ID)

        def child() -> str:
            assert "v" == cache.get("k", tags=["t"])
            assert 0 == cache.metrics.backend_errors
            return str(pool.call(CLIENT_ID))

        child_id = int(in_child(child))

        assert child_id != parent_id
        assert "v" == cache.get("k", tags=["t"])
        assert parent_id == pool.call(CLIENT_ID)
        assert 0 == cache.metrics.backend_errors
    finally:
        cache.close()


@pytest.mark.slow
def test_an_async_cache_forked_between_event_loops(redis_url: str, namespace: str) -> None:
    """Asyncio: a child that runs its own event loop after a fork hits on a connection of its own; the parent's loop goes on with the parent's connection."""
    cache = AsyncCache.from_url(f"{redis_url}?namespace={namespace}")
    pool = cache.backend._direct
    loop = asyncio.new_event_loop()

    async def hit_and_id() -> int:
        assert "v" == await cache.get_or_load("k", lambda: "v", tags=["t"])
        return int(await pool.call(CLIENT_ID))

    try:
        parent_id = loop.run_until_complete(hit_and_id())

        def child() -> str:
            return str(asyncio.run(hit_and_id()))

        child_id = int(in_child(child))

        assert child_id != parent_id
        assert parent_id == loop.run_until_complete(hit_and_id())
        assert 0 == cache.metrics.backend_errors
    finally:
        loop.run_until_complete(cache.aclose())
        loop.close()
