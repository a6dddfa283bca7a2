"""Elected relays: one relay per outbox scans for stale rows; the others stand by and take over."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import MetaData, insert, text

from freshcache import AsyncCache, AsyncInvalidationManager
from freshcache.integrations.sqlalchemy import AsyncOutboxRelay, outbox_table
from freshcache.integrations.sqlalchemy._outbox import outbox_row

from ..databases import Database
from ..integrations.support import async_count_rows, async_create_tables

OUTBOX = outbox_table(MetaData())


@contextlib.asynccontextmanager
async def elected_relay(
    database: Database, cache: AsyncCache, **options: Any
) -> AsyncIterator[AsyncOutboxRelay]:
    """A relay that elects, on an engine (a process's pool) of its own."""
    engine = database.async_engine()
    await async_create_tables(engine, OUTBOX.metadata)
    manager = AsyncInvalidationManager(cache)
    relay = AsyncOutboxRelay(engine, manager, OUTBOX, grace=5.0, elect=True, **options)
    try:
        yield relay
    finally:
        await relay.aclose()
        await manager.aclose()
        await engine.dispose()


async def plant(relay: AsyncOutboxRelay, tag: str, age: float) -> None:
    """An outbox row ``age`` seconds old whose writer never applied it."""
    values = outbox_row([], [], "transaction")
    values.update(tags=json.dumps([tag]), created_at=time.time() - age)
    async with relay.engine.begin() as connection:
        await connection.execute(insert(OUTBOX), [values])


async def test_one_relay_leads_and_the_other_takes_over_when_it_resigns(
    postgres: Database,
) -> None:
    """Of two relays on one PostgreSQL outbox only the first scans; once it stops, the other applies the rows."""
    cache = AsyncCache.from_url("memory://")
    async with elected_relay(postgres, cache) as first, elected_relay(postgres, cache) as second:
        await cache.set("a", 1, tags=["user:1"])
        assert 0 == await first.run_once()
        await plant(first, "user:1", age=10)

        assert 0 == await second.run_once()  # standing by: 10 s is within its standby grace
        assert (1, 0) == (first.last_stats["relay_leader"], second.last_stats["relay_leader"])
        assert 1 == await async_count_rows(second.engine, OUTBOX)
        assert 1 == await cache.get("a")

        assert 1 == await first.run_once()
        assert None is await cache.get("a")

        await first.aclose()  # resigns: its connection, and the lock with it, is gone
        await cache.set("b", 2, tags=["user:2"])
        await plant(second, "user:2", age=10)
        assert 1 == await second.run_once()
        assert (True, 1) == (second.leading, second.election.won)  # type: ignore[union-attr]
        assert None is await cache.get("b")
        assert 0 == await async_count_rows(second.engine, OUTBOX)


async def test_a_leader_whose_connection_is_killed_stands_down(postgres: Database) -> None:
    """The leader's session terminated by the server frees the lead: the standby takes it, and the old leader stands by."""
    cache = AsyncCache.from_url("memory://")
    async with elected_relay(postgres, cache) as first, elected_relay(postgres, cache) as second:
        await first.run_once()
        await second.run_once()
        assert (True, False) == (first.leading, second.leading)
        held = first.election._connection  # type: ignore[union-attr]
        assert held is not None
        pid = (await held.execute(text("select pg_backend_pid()"))).scalar()
        async with second.engine.connect() as admin:
            # Waits (up to 5 s) until the backend has exited, its locks released.
            assert (await admin.execute(text(f"select pg_terminate_backend({pid}, 5000)"))).scalar()

        await second.run_once()
        await first.run_once()

        assert (False, True) == (first.leading, second.leading)


async def test_a_standby_applies_what_a_silent_leader_leaves_past_its_standby_grace(
    postgres: Database,
) -> None:
    """A leader that holds the lead but does not relay delays rows only until the standby grace; a standby scans twice per standby grace."""
    cache = AsyncCache.from_url("memory://")
    async with (
        elected_relay(postgres, cache) as leader,
        elected_relay(postgres, cache, standby_grace=30) as standby,
    ):
        assert 0 == await leader.run_once()
        await cache.set("a", 1, tags=["user:1"])
        await cache.set("b", 2, tags=["user:2"])
        await plant(standby, "user:1", age=60)
        await plant(standby, "user:2", age=10)

        assert 1 == await standby.run_once()

        assert (False, 1) == (standby.leading, leader.last_stats["relay_leader"])
        assert {"b": 2} == await cache.get_many(["a", "b"])
        assert 1 == await async_count_rows(standby.engine, OUTBOX)
        await plant(standby, "user:3", age=60)
        assert 0 == await standby.run_once()  # its next scan is due in standby_grace / 2
        assert 2 == await async_count_rows(standby.engine, OUTBOX)


async def test_another_outbox_elects_its_own_relay(postgres: Database) -> None:
    """A relay of another outbox in the same database is not held back by this one's leader."""
    cache = AsyncCache.from_url("memory://")
    other = outbox_table(MetaData(), name="other_outbox")
    engine = postgres.async_engine()
    await async_create_tables(engine, other.metadata)
    manager = AsyncInvalidationManager(cache)
    elsewhere = AsyncOutboxRelay(engine, manager, other, elect=True)
    try:
        async with elected_relay(postgres, cache) as here:
            await here.run_once()
            await elsewhere.run_once()
            assert (True, True) == (here.leading, elsewhere.leading)
    finally:
        await elsewhere.aclose()
        await manager.aclose()
        await engine.dispose()


async def test_without_an_election_to_hold_every_relay_leads(sqlite: Database) -> None:
    """On SQLite there is no advisory lock: every relay asked to elect scans, as before."""
    cache = AsyncCache.from_url("memory://")
    async with elected_relay(sqlite, cache) as first, elected_relay(sqlite, cache) as second:
        await plant(first, "user:1", age=10)
        assert 1 == await second.run_once()
        await first.run_once()
        assert (1, 1) == (first.last_stats["relay_leader"], second.last_stats["relay_leader"])


def test_standby_grace_is_checked_before_any_io(sqlite: Database) -> None:
    """A negative standby grace is refused at construction, naming the option."""
    from freshcache import ConfigurationError

    engine = sqlite.async_engine()
    manager = AsyncInvalidationManager(AsyncCache.from_url("memory://"))
    with pytest.raises(ConfigurationError, match="standby_grace"):
        AsyncOutboxRelay(engine, manager, OUTBOX, elect=True, standby_grace=-1)
