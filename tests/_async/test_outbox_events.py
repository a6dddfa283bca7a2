"""Domain events through the outbox: written with the transaction, published after its commit, never for a rollback."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, fields
from typing import Any

import pytest
from sqlalchemy import insert, select

from freshcache import (
    AsyncCache,
    AsyncEventBus,
    AsyncInvalidationManager,
    ConfigurationError,
    Event,
    EventTypes,
    InvalidEventError,
    invalidation_handlers,
)
from freshcache.integrations.sqlalchemy import (
    AsyncOutboxRelay,
    SessionInvalidation,
    rules_from_models,
)
from freshcache.integrations.sqlalchemy._outbox import outbox_row

from ..databases import Database
from ..integrations.models import MODELS, User
from ..integrations.support import async_count_rows
from .hooked_sessions import OUTBOX, hooked_stack
from .hooked_sessions import Stack as HookedStack

SIGNED_UP = EventTypes.register("user.signed_up")


@dataclass
class Stack(HookedStack):
    """The shared hooked stack with a bus, and the events its handlers saw."""

    seen: list[Event] = field(default_factory=list)


@pytest.fixture(params=["strict", "commit"])
async def stack(request: pytest.FixtureRequest, database: Database) -> AsyncIterator[Stack]:
    bus = AsyncEventBus(source="api")
    seen: list[Event] = []
    for event_type in ("user.created", "user.updated", "user.deleted", SIGNED_UP):
        bus.subscribe(event_type, seen.append)
    async with hooked_stack(database, request.param, rules_from_models(MODELS), bus=bus) as base:
        yield Stack(**{each.name: getattr(base, each.name) for each in fields(base)}, seen=seen)


async def outbox_rows(stack: Stack) -> list[Any]:
    async with stack.engine.connect() as connection:
        return list(await connection.execute(select(OUTBOX).order_by(OUTBOX.c.created_at)))


async def test_repository_writes_publish_created_updated_and_deleted(stack: Stack) -> None:
    """add, update and delete publish their events after the commit, shaped as the invalidation handlers read them."""
    user = await stack.users.add(email="ada@example.com", name="Ada", score=1)
    await stack.users.update(user.id, name="Ada Lovelace")
    await stack.users.update(user.id, name="Ada Lovelace")  # nothing changed: no event
    await stack.users.delete(user.id)

    ada = {"id": user.id, "email": "ada@example.com", "name": "Ada", "score": 1}
    lovelace = {**ada, "name": "Ada Lovelace"}
    assert [
        ("user.created", {"new": ada}),
        ("user.updated", {"new": lovelace, "old": ada, "changed": ["name"]}),
        ("user.deleted", {"old": lovelace}),
    ] == [(event.type, dict(event.data)) for event in stack.seen]
    assert {"api"} == {event.source for event in stack.seen}


async def test_events_ride_in_the_transactions_one_outbox_row(stack: Stack) -> None:
    """The transaction's invalidation and its events are one outbox row, and the events wait for the commit."""
    async with stack.users.transaction() as session:
        session.add(User(id=7, email="bo@example.com", name="Bo"))
        await session.flush()
        stack.hooks.publish_in(session, Event(SIGNED_UP, {"id": 7}))
        assert [] == stack.seen  # not before the commit

    assert [SIGNED_UP] == [event.type for event in stack.seen]
    [row] = await outbox_rows(stack)  # applied, waiting for the relay's batched delete
    assert [stack.seen[0].as_dict()] == json.loads(row.events)
    assert "user:7" in json.loads(row.tags)


async def test_a_rolled_back_transaction_publishes_nothing(stack: Stack) -> None:
    """Events added in a transaction that rolls back are never published, and leave no outbox row."""

    async def failing_request() -> None:
        async with stack.users.transaction() as session:
            session.add(User(id=7, email="bo@example.com", name="Bo"))
            stack.hooks.publish_in(session, Event(SIGNED_UP, {"id": 7}))
            raise RuntimeError("the request failed")

    with pytest.raises(RuntimeError):
        await failing_request()

    assert [] == stack.seen
    assert [] == await outbox_rows(stack)
    assert 0 == await stack.relay.run_once()
    assert [] == stack.seen


async def test_a_rolled_back_savepoint_drops_its_events(stack: Stack) -> None:
    """An event added inside a savepoint that rolls back is dropped; one from a released savepoint is kept."""
    async with stack.users.transaction() as session:
        stack.hooks.publish_in(session, Event(SIGNED_UP, {"id": 1}))
        async with session.begin_nested():
            stack.hooks.publish_in(session, Event(SIGNED_UP, {"id": 2}))
        savepoint = await session.begin_nested()
        stack.hooks.publish_in(session, Event(SIGNED_UP, {"id": 3}))
        await savepoint.rollback()

    assert [{"id": 1}, {"id": 2}] == [dict(event.data) for event in stack.seen]


async def test_events_without_a_write_are_published_through_the_outbox(stack: Stack) -> None:
    """A transaction that only adds events still writes its outbox row, and publishes after the commit."""
    async with stack.users.transaction() as session:
        stack.hooks.publish_in(session, Event(SIGNED_UP, {"id": 1}))

    assert [SIGNED_UP] == [event.type for event in stack.seen]
    [row] = await outbox_rows(stack)
    assert [] == json.loads(row.tags)


async def test_the_relay_publishes_the_events_of_a_row_left_behind(stack: Stack) -> None:
    """A row whose writer never published is published by the relay with the same event id, once."""
    event = Event(SIGNED_UP, {"id": 9})
    left_behind = outbox_row(["user:9"], ["user"], events=[event])
    left_behind["created_at"] = time.time() - 120
    async with stack.engine.begin() as connection:
        await connection.execute(insert(OUTBOX), [left_behind])

    assert 1 == await stack.relay.run_once()
    assert 0 == await stack.relay.run_once()

    assert [(event.id, event.data)] == [(each.id, each.data) for each in stack.seen]
    assert 1 == (await stack.relay.stats())["relayed_events"]
    assert 0 == await async_count_rows(stack.engine, OUTBOX)


async def test_a_relay_without_a_bus_leaves_rows_with_events(stack: Stack) -> None:
    """A relay that cannot publish applies rows without events and leaves the others to one that can."""
    rows = [outbox_row(["user:1"], ["user"]), outbox_row([], [], events=[Event(SIGNED_UP)])]
    for row in rows:
        row["created_at"] = time.time() - 120
    async with stack.engine.begin() as connection:
        await connection.execute(insert(OUTBOX), rows)
    mute = AsyncOutboxRelay(stack.engine, stack.manager, OUTBOX, grace=60)

    assert 1 == await mute.run_once()
    assert 1 == await async_count_rows(stack.engine, OUTBOX)
    assert 1 == await stack.relay.run_once()
    assert [SIGNED_UP] == [event.type for event in stack.seen]


async def test_unreadable_events_are_logged_and_do_not_block_the_row(stack: Stack) -> None:
    """An event the relay cannot read is counted and dropped; the row's tags and good events still go."""
    good = Event(SIGNED_UP, {"id": 1})
    row = outbox_row(["user:1"], ["user"])
    row["events"] = json.dumps([{"type": "user.signed_up"}, good.as_dict(), "junk"])
    row["created_at"] = time.time() - 120
    async with stack.engine.begin() as connection:
        await connection.execute(insert(OUTBOX), [row])

    assert 1 == await stack.relay.run_once()

    assert [good.id] == [each.id for each in stack.seen]
    assert 2 == (await stack.relay.stats())["unreadable_events"]


async def test_publish_in_refuses_what_it_cannot_keep(stack: Stack) -> None:
    """publish_in refuses a non-event, a session not in a transaction, and hooks without a bus, before any I/O."""
    async with stack.users.transaction() as session:
        with pytest.raises(InvalidEventError, match="publish_in takes Event objects, not dict"):
            stack.hooks.publish_in(session, {"type": SIGNED_UP})  # type: ignore[arg-type]
    async with stack.sessions() as idle:
        with pytest.raises(ConfigurationError, match="needs a session in a transaction"):
            stack.hooks.publish_in(idle, Event(SIGNED_UP))
    bare = SessionInvalidation(stack.manager, outbox=OUTBOX)
    async with stack.users.transaction() as session:
        with pytest.raises(ConfigurationError, match="publish_in needs hooks made with bus"):
            bare.publish_in(session, Event(SIGNED_UP))
    assert [] == stack.seen


async def test_hooks_with_a_bus_need_a_relay_with_one(stack: Stack) -> None:
    """Hooks that publish refuse a relay that could not publish what a dead writer left, and a bus that is not one."""
    mute = AsyncOutboxRelay(stack.engine, stack.manager, OUTBOX)
    with pytest.raises(ConfigurationError, match="their relay has no bus"):
        SessionInvalidation(stack.manager, outbox=OUTBOX, relay=mute, bus=stack.bus)
    with pytest.raises(ConfigurationError):
        SessionInvalidation(stack.manager, outbox=OUTBOX, bus=object())  # type: ignore[arg-type]


async def test_a_repository_event_invalidates_another_services_cache_as_the_hooks_would(
    stack: Stack,
) -> None:
    """A challenge moved between users, seen only through its event, drops both users' lists in another cache and nothing else."""
    elsewhere = AsyncCache.from_url("memory://")
    manager = AsyncInvalidationManager(elsewhere, rules_from_models(MODELS))
    invalidation_handlers(stack.bus, manager, {"challenge.updated": "challenge"})
    ada = await stack.users.add(email="ada@example.com", name="Ada")
    bob = await stack.users.add(email="bob@example.com", name="Bob")
    eve = await stack.users.add(email="eve@example.com", name="Eve")
    challenge = await stack.challenges.add(user_id=ada.id, title="Sort a list")
    for user in (ada, bob, eve):
        await elsewhere.set(f"list:{user.id}", [user.id], tags=[f"user:{user.id}:challenges"])

    await stack.challenges.update(challenge.id, user_id=bob.id)

    assert {f"list:{eve.id}": [eve.id]} == await elsewhere.get_many(
        [f"list:{user.id}" for user in (ada, bob, eve)]
    )
    await manager.aclose()
    await elsewhere.aclose()
