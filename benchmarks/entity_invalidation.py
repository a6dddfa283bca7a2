"""Suite ``manager``: entity invalidations per second on Redis, through the invalidation manager.

A writer's transaction updates 1, 10 or 100 challenges and makes one call for all of them:
``invalidate_entity`` for one, ``invalidate_entities`` for more. Each change touches two
tags, ``challenge:{id}`` and ``user:{user_id}:challenges`` (two challenges share a user in
the larger transactions), and every transaction changes challenges no other one has
touched. With several writers at once, the cache's group commit merges their concurrent
calls into shared backend operations.

The reference is a raw client doing the least any cache could: one ``DEL`` of the
transaction's tag keys per transaction, each writer with a connection of its own. A
table's figure is entity invalidations per second, the median over interleaved rounds.
One more row, one writer, is freshcache's floor: the same invalidate script freshcache
sends, by SHA, its bytes written on a bare socket and its reply read back, with no client.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack

import redis.asyncio

from benchmarks.lineup import Lineup
from benchmarks.settings import Settings
from benchmarks.tables import Table, at_least, at_least_per_second
from benchmarks.timing import AsyncLoop, measure_async
from freshcache import AsyncCache, AsyncInvalidationManager, EntityChange, Rules
from freshcache._redis import scripts
from freshcache._redis.connections import pack_text
from freshcache._redis.keys import RedisKeys

GOAL = at_least_per_second(20_000)
# One writer against the raw client's one writer: a ratio of throughputs.
RATIO_GOALS = {1: at_least(1.0), 100: at_least(0.35)}
RATE = "entity invalidations/s"
TITLE_CHANGED = frozenset({"title"})
CHALLENGES_PER_USER = 2
RULES = Rules().entity("challenge", tags=["challenge:{id}", "user:{user_id}:challenges"])


def run(settings: Settings) -> list[Table]:
    return asyncio.run(_tables(settings))


FLOOR = "socket: the invalidate script's EVALSHA, no client, 1 writer (the floor)"


def raw_name(writers: int) -> str:
    return f"redis.asyncio DEL of the tags, {_writers(writers)}"


def freshcache_name(size: int, writers: int) -> str:
    call = "invalidate_entity" if size == 1 else "invalidate_entities"
    return f"freshcache {call}, {_writers(writers)}"


def _writers(count: int) -> str:
    return f"{count} writer{'' if count == 1 else 's'}"


def entities_per_round(settings: Settings, size: int) -> int:
    """Entities per contestant per round: whole transactions, the same number for each writer."""
    unit = size * max(settings.writers)
    wanted = max(settings.manager_entities, unit * settings.transactions_per_writer)
    return -(-wanted // unit) * unit


def _challenges(ids: Iterator[int], size: int) -> list[tuple[int, int]]:
    """``size`` challenges no transaction has changed yet, as ``(id, user_id)``."""
    first = next(ids) * size
    return [(id_, id_ // CHALLENGES_PER_USER) for id_ in range(first, first + size)]


def _writers_loop(
    size: int, writers: int, transaction: Callable[[], Awaitable[None]]
) -> Callable[[int], Awaitable[int]]:
    """A loop of ``ops`` entity invalidations: ``ops / size`` transactions shared by the writers."""

    async def write(transactions: int) -> None:
        for _ in range(transactions):
            await transaction()

    async def loop(ops: int) -> int:
        each = max(1, ops // (size * writers))
        await asyncio.gather(*(write(each) for _ in range(writers)))
        return each * writers

    return loop


async def _tables(settings: Settings) -> list[Table]:
    async with AsyncExitStack() as stack:
        raw = redis.asyncio.Redis.from_url(settings.redis_url)
        stack.push_async_callback(raw.aclose)
        cache = AsyncCache.from_url(settings.redis_url, namespace=settings.namespace)
        stack.push_async_callback(cache.aclose)
        stack.push_async_callback(cache.clear)
        manager = AsyncInvalidationManager(cache, RULES)
        stack.push_async_callback(manager.aclose)
        await _check_invalidates(cache, manager)
        return [
            await _table(settings, size, raw, cache, manager, stack)
            for size in settings.transaction_sizes
        ]


async def _table(
    settings: Settings,
    size: int,
    raw: redis.asyncio.Redis,
    cache: AsyncCache,
    manager: AsyncInvalidationManager,
    stack: AsyncExitStack,
) -> Table:
    ids = itertools.count(1)  # each transaction takes fresh challenges
    prefix = f"{settings.namespace}:raw:"
    operations: dict[str, list[int]] = {}  # backend operations and transactions, per contestant
    lineup: Lineup[AsyncLoop] = Lineup()
    for writers in settings.writers:

        async def raw_transaction() -> None:
            keys: dict[str, None] = {}
            for id_, user_id in _challenges(ids, size):
                keys[f"{prefix}challenge:{id_}"] = None
                keys[f"{prefix}user:{user_id}:challenges"] = None
            await raw.delete(*keys)

        lineup.add(raw_name(writers), _writers_loop(size, writers, raw_transaction))
    lineup.add(FLOOR, _writers_loop(size, 1, await _floor_transaction(settings, ids, size, stack)))

    async def transaction() -> None:
        changes = [
            EntityChange(
                "challenge",
                new={"id": id_, "user_id": user_id, "title": "new"},
                old={"id": id_, "user_id": user_id, "title": "old"},
                changed=TITLE_CHANGED,
            )
            for id_, user_id in _challenges(ids, size)
        ]
        if size == 1:
            (change,) = changes
            await manager.invalidate_entity(
                "challenge", new=change.new, old=change.old, changed=change.changed
            )
        else:
            await manager.invalidate_entities(changes)

    for writers in settings.writers:
        name = freshcache_name(size, writers)
        counts = operations[name] = [0, 0]
        goal = RATIO_GOALS.get(size, GOAL) if writers == min(settings.writers) else GOAL
        lineup.add(name, _counted(_writers_loop(size, writers, transaction), cache, counts), goal)

    entities = entities_per_round(settings, size)
    started = manager.metrics.entity_invalidations
    results = await measure_async(lineup.loops, rounds=settings.rounds, ops=entities)
    _check_applied(manager, started)
    table = lineup.table(
        results,
        suite="manager",
        title=f"Entity invalidation on Redis, transactions of {size:,} "
        f"entit{'y' if size == 1 else 'ies'}: throughput",
        reference=raw_name(min(settings.writers)),
        goal=_goal_text(size),
    )
    table.rate = RATE
    note = _merging_note(operations, entities // size)
    if note:
        table.notes.append(note)
    return table


async def _floor_transaction(
    settings: Settings, ids: Iterator[int], size: int, stack: AsyncExitStack
) -> Callable[[], Awaitable[None]]:
    """One transaction's invalidate script, as freshcache packs it, on a socket of its own."""
    keys = RedisKeys(settings.namespace)
    sha = hashlib.sha1(scripts.INVALIDATE.encode()).hexdigest()
    reader, writer = await asyncio.open_connection(*settings.redis_address())
    stack.push_async_callback(writer.wait_closed)
    stack.callback(writer.close)
    writer.write(pack_text("SCRIPT", ["LOAD", scripts.INVALIDATE]))
    if (await reader.readuntil(b"\r\n")).strip() != f"${len(sha)}".encode():
        raise RuntimeError("manager suite: the floor's SCRIPT LOAD failed")
    await reader.readuntil(b"\r\n")

    async def transaction() -> None:
        tags: dict[str, None] = {}
        for id_, user_id in _challenges(ids, size):
            tags[f"challenge:{id_}"] = None
            tags[f"user:{user_id}:challenges"] = None
        names = keys.tags(list(tags)) + keys.holds(list(tags))
        writer.write(pack_text("EVALSHA", [sha, str(len(names)), *names, str(len(tags))]))
        reply = await reader.readuntil(b"\r\n")
        if not reply.startswith(b":"):
            raise RuntimeError(f"manager suite: the floor's script answered {reply!r}")

    return transaction


def _goal_text(size: int) -> str:
    ratio = RATIO_GOALS.get(size)
    one_writer = (
        f"with one writer, at least {ratio.bound:g}x the raw client's throughput (≥ {ratio.bound:g}x); "
        if ratio
        else ""
    )
    return (
        f"{one_writer}at least 20,000 entity invalidations per second on this machine for "
        f"{'the other' if ratio else 'every'} freshcache row (≥ 20,000/s). The ratio is the "
        "throughput over the raw client's with one writer."
    )


def _counted(
    loop: Callable[[int], Awaitable[int]], cache: AsyncCache, counts: list[int]
) -> AsyncLoop:
    """``loop``, adding the backend operations it caused and its transactions to ``counts``."""

    async def counted(ops: int) -> None:
        before = _backend_operations(cache)
        counts[1] += await loop(ops)
        counts[0] += _backend_operations(cache) - before

    return counted


def _backend_operations(cache: AsyncCache) -> int:
    # The group commit's own count of backend calls ("for the curious and the tests").
    batcher = getattr(cache, "_batcher", None)
    return int(getattr(batcher, "operations", 0))


def _merging_note(operations: dict[str, list[int]], transactions: int) -> str:
    parts = [
        f"{name.rsplit(', ', 1)[1]}: {made / count:.2f}"
        for name, (made, count) in operations.items()
        if count and made
    ]
    if not parts:
        return ""
    return (
        f"Backend operations per transaction ({transactions:,} transactions per round; "
        "below 1 when the group commit merged concurrent ones): " + ", ".join(parts) + "."
    )


async def _check_invalidates(cache: AsyncCache, manager: AsyncInvalidationManager) -> None:
    """Before timing: the call does invalidate, an entry under the entity's tag is a miss after it."""
    tags = ["challenge:0", "user:0:challenges"]
    await cache.set("manager-check", {"ok": True}, tags=tags)
    if await cache.get("manager-check", tags=tags) != {"ok": True}:
        raise RuntimeError("manager suite: could not store the check entry")
    await manager.invalidate_entity("challenge", old={"id": 0, "user_id": 0})
    if await cache.get("manager-check", tags=tags) is not None:
        raise RuntimeError("manager suite: the entry survived invalidate_entity")


def _check_applied(manager: AsyncInvalidationManager, started: int) -> None:
    """After timing: every invalidation was applied, none failed over to the retry queue."""
    metrics = manager.metrics
    if metrics.failed_invalidations or metrics.retried_invalidations:
        raise RuntimeError(f"manager suite: invalidations failed: {manager.snapshot()}")
    if metrics.entity_invalidations <= started:
        raise RuntimeError("manager suite: the manager counted no entity invalidation")
