"""Invalidating a tag is O(1): one backend operation, whatever the number of entries under it."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from freshcache import AsyncCache, AsyncMemoryBackend, Cache

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

    from freshcache._redis.connections import pack_text
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
            # The cache's connections: redis-py's, and the direct path's one (idle now).
            addresses = {client.client_info()["addr"]}
            if cache.backend._direct is not None:
                info = cache.backend._direct.call(pack_text("CLIENT", ["INFO"])).decode()
                addresses.add(info.split("addr=")[1].split(" ")[0])
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
            sent = [c for c in seen if f"{c['client_address']}:{c['client_port']}" in addresses]
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
