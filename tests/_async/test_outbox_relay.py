"""The outbox relay: what it applies, when, and what it does with rows it cannot read."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import MetaData, insert

from freshcache import AsyncCache, AsyncInvalidationManager
from freshcache.integrations.sqlalchemy import AsyncOutboxRelay, outbox_table
from freshcache.integrations.sqlalchemy._outbox import outbox_row

from ..databases import Database
from ..integrations.support import async_count_rows, async_create_tables

OUTBOX = outbox_table(MetaData())


@pytest.fixture
async def relay(database: Database) -> AsyncIterator[AsyncOutboxRelay]:
    engine = database.async_engine()
    await async_create_tables(engine, OUTBOX.metadata)
    manager = AsyncInvalidationManager(AsyncCache.from_url("memory://"))
    relay = AsyncOutboxRelay(engine, manager, OUTBOX, grace=5.0)
    yield relay
    await relay.aclose()
    await manager.aclose()
    await engine.dispose()


async def add_rows(relay: AsyncOutboxRelay, *rows: dict[str, Any]) -> None:
    async with relay.engine.begin() as connection:
        await connection.execute(insert(OUTBOX), list(rows))


def row(tags: Any, *, age: float = 0.0, source: str = "transaction") -> dict[str, Any]:
    values = outbox_row([], [], source)
    values["tags"] = tags if isinstance(tags, str) else json.dumps(tags)
    values["created_at"] = time.time() - age
    return values


async def test_rows_within_the_grace_are_left_to_their_writer(relay: AsyncOutboxRelay) -> None:
    """A fresh application row waits out the grace period; an old one is applied and deleted."""
    cache = relay.manager.cache
    await cache.set("a", 1, tags=["user:1"])
    await cache.set("b", 2, tags=["user:2"])
    await add_rows(relay, row(["user:1"], age=60), row(["user:2"], age=0))

    assert 1 == await relay.run_once()

    assert {"b": 2} == await cache.get_many(["a", "b"])
    assert 1 == await async_count_rows(relay.engine, OUTBOX)


async def test_trigger_rows_do_not_wait_for_the_grace(relay: AsyncOutboxRelay) -> None:
    """A row a database trigger wrote has no writer to wait for: it is applied at once."""
    cache = relay.manager.cache
    await cache.set("a", 1, tags=["user:1"])
    await add_rows(relay, row(["user:1"], source="trigger"))

    assert 1 == await relay.run_once()

    assert None is await cache.get("a")


async def test_invalid_tags_are_dropped_without_blocking_the_rows_behind(
    relay: AsyncOutboxRelay,
) -> None:
    """A row with an invalid tag is applied for its valid tags, counted, and never blocks the queue."""
    cache = relay.manager.cache
    await cache.set("a", 1, tags=["user:1"])
    await cache.set("b", 2, tags=["user:2"])
    await add_rows(relay, row(["bad tag", "user:1"], age=60), row(["user:2"], age=50))

    assert 2 == await relay.run_once()

    assert {} == await cache.get_many(["a", "b"])
    assert 0 == await async_count_rows(relay.engine, OUTBOX)
    assert (1, 0) == (relay.invalid_tags, relay.unreadable_rows)


async def test_an_unreadable_row_drops_every_entry(relay: AsyncOutboxRelay) -> None:
    """A row whose tags cannot be read is deleted after every entry is dropped: colder, never stale."""
    cache = relay.manager.cache
    await cache.set("a", 1, tags=["user:1"])
    await cache.set("b", 2, tags=["unrelated"])
    await add_rows(relay, row("{not json", age=60))

    assert 1 == await relay.run_once()

    assert {} == await cache.get_many(["a", "b"])
    assert (0, 1) == (relay.invalid_tags, relay.unreadable_rows)
    assert 0 == await async_count_rows(relay.engine, OUTBOX)


async def test_rows_stay_while_the_cache_refuses(
    relay: AsyncOutboxRelay, database: Database
) -> None:
    """When the invalidation cannot be applied, the claimed rows stay for the next run."""
    dead = AsyncCache.from_url("redis://127.0.0.1:1/0", connect_timeout=0.1, retries=0)
    manager = AsyncInvalidationManager(dead, retries=0)
    stuck = AsyncOutboxRelay(relay.engine, manager, OUTBOX, grace=0.0)
    await add_rows(relay, row(["user:1"], age=60))
    try:
        assert 0 == await stuck.run_once()
        assert 1 == await async_count_rows(relay.engine, OUTBOX)
    finally:
        await manager.aclose()
        await dead.aclose()
