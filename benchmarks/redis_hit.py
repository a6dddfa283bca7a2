"""Suite ``redis``: one hit on Redis, freshcache against a raw GET of the same bytes and the peers.

freshcache's hit with known tags is one MGET of the entry and its tag versions, checked
in the client, then a JSON decode; the reference is a plain GET of the payload's bytes,
not decoded. ``GET + json.loads`` shows what the decode alone costs, and a raw MGET of
the payload and a version what redis-py's round trip alone costs. The last raw row is the
floor no client can go below: the same MGET's bytes written on a socket held open, and
read back until the reply is complete, with no client library, no parsing and no
timeout; in wall time it is mostly the kernel's and the server's share of a round trip.
The tagless get's floor is the same for its script call, by SHA.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import warnings
from contextlib import AsyncExitStack, ExitStack
from typing import Any
from urllib.parse import urlsplit

import redis
import redis.asyncio

from benchmarks.checks import expect_hit, expect_only_hits
from benchmarks.lineup import Lineup
from benchmarks.settings import PAYLOAD, PAYLOAD_BYTES, Settings
from benchmarks.tables import Table, at_most
from benchmarks.timing import AsyncLoop, SyncLoop, measure, measure_async
from freshcache import AsyncCache, Cache
from freshcache._redis import scripts
from freshcache._redis.connections import pack
from freshcache._redis.keys import RedisKeys

KEY = "hit"
TAG = "hit-tag"
TTL = 600
ASYNC_GOAL = at_most(0.75)
SYNC_GOAL = at_most(0.6)
TAGLESS_GOAL = at_most(0.9)
GOAL_TEXT = (
    "freshcache's hit with its tag known is faster than a raw GET of the same payload: at most "
    "{bound}x its cost ({flavour}); a tagless get at most 0.9x."
)

ASYNC_RAW = "redis.asyncio GET"
# freshcache's floor: the round trip it makes, without the check and the decode.
MGET_LABEL = "{client} MGET of payload + a 16-byte version"
VERSION = b"0123456789abcdef"
SYNC_RAW = "redis GET"
FLOOR_LABEL = "{flavour} socket: the same MGET's bytes, no client (the floor)"
SCRIPT_FLOOR_LABEL = "{flavour} socket: the tagless get's script by SHA, no client (its floor)"


def _reply_size(values: list[bytes]) -> int:
    """The length of an array reply of these bulk strings."""
    return len(b"*%d\r\n" % len(values)) + sum(
        len(b"$%d\r\n%b\r\n" % (len(value), value)) for value in values
    )


def _mget_bytes(keys: list[str]) -> tuple[bytes, int]:
    """The packed MGET of ``keys`` and the length of its reply (the payload, then the version)."""
    return pack(b"MGET", *(key.encode() for key in keys)), _reply_size([PAYLOAD_BYTES, VERSION])


def _script_bytes(settings: Settings, entry: bytes) -> tuple[bytes, int]:
    """The tagless get's GET_ENTRIES call as freshcache sends it, and its reply's length."""
    keys = RedisKeys(settings.namespace)
    sha = hashlib.sha1(scripts.GET_ENTRIES.encode()).hexdigest().encode()
    command = pack(b"EVALSHA", sha, b"1", (keys.entry + KEY).encode(), keys.tag.encode())
    return command, _reply_size([entry])


def _stored_entry(settings: Settings) -> str:
    return RedisKeys(settings.namespace).entry + KEY


def run(settings: Settings) -> list[Table]:
    with warnings.catch_warnings():
        # aiocache and cashews call redis-py methods it deprecates: their business, not ours.
        warnings.filterwarnings(
            "ignore", category=DeprecationWarning, module=r"(aiocache|cashews|dogpile)\."
        )
        return [asyncio.run(_async_table(settings)), _sync_table(settings)]


def _load() -> dict[str, Any]:
    return PAYLOAD


# asyncio


async def _async_table(settings: Settings) -> Table:
    lineup: Lineup[AsyncLoop] = Lineup()
    async with AsyncExitStack() as stack:
        raw = redis.asyncio.Redis.from_url(settings.redis_url)
        stack.push_async_callback(raw.aclose)
        raw_key = f"{settings.namespace}:raw:{KEY}"
        await raw.set(raw_key, PAYLOAD_BYTES, ex=TTL)
        stack.push_async_callback(raw.delete, raw_key)
        expect_hit(await raw.get(raw_key), PAYLOAD_BYTES, ASYNC_RAW)

        async def raw_get(ops: int) -> None:
            get = raw.get
            for _ in range(ops):
                await get(raw_key)

        async def raw_get_decoded(ops: int) -> None:
            get, loads = raw.get, json.loads
            for _ in range(ops):
                loads(await get(raw_key))  # type: ignore[arg-type]

        version_key = f"{settings.namespace}:raw:version"
        await raw.set(version_key, VERSION, ex=TTL)
        stack.push_async_callback(raw.delete, version_key)
        both = [raw_key, version_key]

        async def raw_mget(ops: int) -> None:
            mget = raw.mget
            for _ in range(ops):
                await mget(both)

        lineup.add(ASYNC_RAW, raw_get)
        lineup.add(f"{ASYNC_RAW} + json.loads", raw_get_decoded)
        lineup.add(MGET_LABEL.format(client="redis.asyncio"), raw_mget)
        name = FLOOR_LABEL.format(flavour="asyncio")
        try:
            lineup.add(name, await _async_floor(settings, *_mget_bytes(both), stack))
        except Exception as exc:
            lineup.unavailable(name, exc)

        cache = AsyncCache.from_url(settings.redis_url, namespace=settings.namespace)
        stack.push_async_callback(cache.aclose)
        stack.push_async_callback(cache.clear)
        await cache.get_or_load(KEY, _load, tags=[TAG], ttl=TTL)
        expect_hit(await cache.get(KEY, tags=[TAG]), PAYLOAD, "freshcache")
        expect_hit(await cache.get(KEY), PAYLOAD, "freshcache, no tags")

        async def freshcache_get_or_load(ops: int) -> None:
            get_or_load, tags = cache.get_or_load, [TAG]
            for _ in range(ops):
                await get_or_load(KEY, _load, tags=tags, ttl=TTL)

        async def freshcache_get(ops: int) -> None:
            get, tags = cache.get, [TAG]
            for _ in range(ops):
                await get(KEY, tags=tags)

        async def freshcache_get_tagless(ops: int) -> None:
            get = cache.get
            for _ in range(ops):
                await get(KEY)

        lineup.add("freshcache AsyncCache.get_or_load (1 tag)", freshcache_get_or_load, ASYNC_GOAL)
        lineup.add("freshcache AsyncCache.get(tags=[tag])", freshcache_get, ASYNC_GOAL)
        lineup.add("freshcache AsyncCache.get (no tags)", freshcache_get_tagless, TAGLESS_GOAL)
        name = SCRIPT_FLOOR_LABEL.format(flavour="asyncio")
        try:
            entry = await raw.get(_stored_entry(settings))
            floor = await _async_floor(settings, *_script_bytes(settings, entry), stack)
            lineup.add(name, floor)
        except Exception as exc:
            lineup.unavailable(name, exc)

        name = "cashews get (redis)"
        try:
            lineup.add(name, await _cashews(settings, stack))
        except Exception as exc:
            lineup.unavailable(name, exc)
        name = "aiocache RedisCache.get"
        try:
            lineup.add(name, await _aiocache(settings, stack))
        except Exception as exc:
            lineup.unavailable(name, exc)

        results = await measure_async(lineup.loops, rounds=settings.rounds, ops=settings.redis_ops)
        expect_only_hits(cache.metrics, "freshcache")
    return lineup.table(
        results,
        suite="redis",
        title="Redis hit, asyncio: sequential latency, one caller",
        reference=ASYNC_RAW,
        goal=GOAL_TEXT.format(bound=0.75, flavour="asyncio"),
    )


async def _async_floor(
    settings: Settings, packed: bytes, size: int, stack: AsyncExitStack
) -> AsyncLoop:
    """``packed`` sent and its reply of ``size`` bytes read, on a socket of its own."""
    reader, writer = await asyncio.open_connection(*settings.redis_address())
    stack.push_async_callback(writer.wait_closed)
    stack.callback(writer.close)

    async def exchange() -> bytes:
        writer.write(packed)
        data = await reader.read(65_536)
        while len(data) < size:
            data += await reader.read(65_536)
        return data

    data = await exchange()
    expect_hit((len(data), data.count(PAYLOAD_BYTES)), (size, 1), "the socket floor")

    async def socket_mget(ops: int) -> None:
        write, read = writer.write, reader.read
        for _ in range(ops):
            write(packed)
            data = await read(65_536)
            while len(data) < size:
                data += await read(65_536)

    return socket_mget


async def _cashews(settings: Settings, stack: AsyncExitStack) -> AsyncLoop:
    from cashews import Cache as CashewsCache

    cache = CashewsCache()
    cache.setup(settings.redis_url)
    stack.push_async_callback(cache.close)
    key = f"{settings.namespace}:cashews:{KEY}"
    await cache.set(key, PAYLOAD, expire=TTL)
    stack.push_async_callback(cache.delete, key)
    expect_hit(await cache.get(key), PAYLOAD, "cashews")

    async def cashews_get(ops: int) -> None:
        get = cache.get
        for _ in range(ops):
            await get(key)

    return cashews_get


async def _aiocache(settings: Settings, stack: AsyncExitStack) -> AsyncLoop:
    from aiocache import RedisCache  # type: ignore[import-untyped]

    url = urlsplit(settings.redis_url)
    cache = RedisCache(
        endpoint=url.hostname or "127.0.0.1",
        port=url.port or 6379,
        db=int(url.path.strip("/") or 0),
        namespace=f"{settings.namespace}:aiocache",
    )
    stack.push_async_callback(cache.close)
    await cache.set(KEY, PAYLOAD, ttl=TTL)
    stack.push_async_callback(cache.delete, KEY)
    expect_hit(await cache.get(KEY), PAYLOAD, "aiocache")

    async def aiocache_get(ops: int) -> None:
        get = cache.get
        for _ in range(ops):
            await get(KEY)

    return aiocache_get


# sync


def _sync_table(settings: Settings) -> Table:
    lineup: Lineup[SyncLoop] = Lineup()
    with ExitStack() as stack:
        raw = redis.Redis.from_url(settings.redis_url)
        stack.callback(raw.close)
        raw_key = f"{settings.namespace}:raw:{KEY}"
        raw.set(raw_key, PAYLOAD_BYTES, ex=TTL)
        stack.callback(raw.delete, raw_key)
        expect_hit(raw.get(raw_key), PAYLOAD_BYTES, SYNC_RAW)

        def raw_get(ops: int) -> None:
            get = raw.get
            for _ in range(ops):
                get(raw_key)

        def raw_get_decoded(ops: int) -> None:
            get, loads = raw.get, json.loads
            for _ in range(ops):
                loads(get(raw_key))  # type: ignore[arg-type]

        version_key = f"{settings.namespace}:raw:version"
        raw.set(version_key, VERSION, ex=TTL)
        stack.callback(raw.delete, version_key)
        both = [raw_key, version_key]

        def raw_mget(ops: int) -> None:
            mget = raw.mget
            for _ in range(ops):
                mget(both)

        lineup.add(SYNC_RAW, raw_get)
        lineup.add(f"{SYNC_RAW} + json.loads", raw_get_decoded)
        lineup.add(MGET_LABEL.format(client="redis"), raw_mget)
        name = FLOOR_LABEL.format(flavour="blocking")
        try:
            lineup.add(name, _sync_floor(settings, *_mget_bytes(both), stack))
        except Exception as exc:
            lineup.unavailable(name, exc)

        cache = Cache.from_url(settings.redis_url, namespace=settings.namespace)
        stack.callback(cache.close)
        stack.callback(cache.clear)
        cache.get_or_load(KEY, _load, tags=[TAG], ttl=TTL)
        expect_hit(cache.get(KEY, tags=[TAG]), PAYLOAD, "freshcache")
        expect_hit(cache.get(KEY), PAYLOAD, "freshcache, no tags")

        def freshcache_get_or_load(ops: int) -> None:
            get_or_load, tags = cache.get_or_load, [TAG]
            for _ in range(ops):
                get_or_load(KEY, _load, tags=tags, ttl=TTL)

        def freshcache_get(ops: int) -> None:
            get, tags = cache.get, [TAG]
            for _ in range(ops):
                get(KEY, tags=tags)

        def freshcache_get_tagless(ops: int) -> None:
            get = cache.get
            for _ in range(ops):
                get(KEY)

        lineup.add("freshcache Cache.get_or_load (1 tag)", freshcache_get_or_load, SYNC_GOAL)
        lineup.add("freshcache Cache.get(tags=[tag])", freshcache_get, SYNC_GOAL)
        lineup.add("freshcache Cache.get (no tags)", freshcache_get_tagless, TAGLESS_GOAL)
        name = SCRIPT_FLOOR_LABEL.format(flavour="blocking")
        try:
            entry = raw.get(_stored_entry(settings))
            lineup.add(name, _sync_floor(settings, *_script_bytes(settings, entry), stack))
        except Exception as exc:
            lineup.unavailable(name, exc)

        name = "dogpile.cache redis region.get"
        try:
            lineup.add(name, _dogpile(settings, stack))
        except Exception as exc:
            lineup.unavailable(name, exc)

        results = measure(lineup.loops, rounds=settings.rounds, ops=settings.redis_ops)
        expect_only_hits(cache.metrics, "freshcache")
    return lineup.table(
        results,
        suite="redis",
        title="Redis hit, sync: sequential latency, one thread",
        reference=SYNC_RAW,
        goal=GOAL_TEXT.format(bound=0.6, flavour="sync"),
    )


def _sync_floor(settings: Settings, packed: bytes, size: int, stack: ExitStack) -> SyncLoop:
    """``packed`` sent and its reply of ``size`` bytes read, on a socket of its own."""
    sock = socket.create_connection(settings.redis_address())
    stack.callback(sock.close)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def exchange() -> bytes:
        sock.sendall(packed)
        data = sock.recv(65_536)
        while len(data) < size:
            data += sock.recv(65_536)
        return data

    data = exchange()
    expect_hit((len(data), data.count(PAYLOAD_BYTES)), (size, 1), "the socket floor")

    def socket_mget(ops: int) -> None:
        send, receive = sock.sendall, sock.recv
        for _ in range(ops):
            send(packed)
            data = receive(65_536)
            while len(data) < size:
                data += receive(65_536)

    return socket_mget


def _dogpile(settings: Settings, stack: ExitStack) -> SyncLoop:
    from dogpile.cache import make_region

    region = make_region().configure(
        "dogpile.cache.redis",
        arguments={"url": settings.redis_url, "redis_expiration_time": TTL},
    )
    key = f"{settings.namespace}:dogpile:{KEY}"
    region.set(key, PAYLOAD)
    stack.callback(region.delete, key)
    expect_hit(region.get(key), PAYLOAD, "dogpile.cache")

    def dogpile_get(ops: int) -> None:
        get = region.get
        for _ in range(ops):
            get(key)

    return dogpile_get
