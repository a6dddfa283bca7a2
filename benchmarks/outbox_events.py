"""Suite ``outbox_events``: what a domain event costs a write that already has the outbox.

One caller changes one challenge's title through the repository's ``update`` on
PostgreSQL, with the cache on Redis and the session hooks in strict mode with the outbox
on: the reference is that write without events (the transaction's outbox row holds its
tags). With events on, the hooks are given a bus: the repository adds its
``challenge.updated`` event (new and old values, changed fields) to the transaction, the
same single outbox row carries it, and after the commit the bus publishes it, on the
in-process transport (to one handler) or on Redis Streams (one ``XADD``). Each batch
ends with the relay's batched ``DELETE`` of its applied rows, inside the timing. SQLAlchemy
alone is shown for scale.

Everything lives in a PostgreSQL schema of the run's own, dropped at the end; the Redis
stream lives under the run's namespace, swept at the end.
"""

from __future__ import annotations

import asyncio
import itertools
from contextlib import AsyncExitStack
from typing import Any

from sqlalchemy import create_engine
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from benchmarks.lineup import Lineup
from benchmarks.settings import Settings
from benchmarks.sqlalchemy_writes import _create_tables, _outbox, _schema
from benchmarks.tables import Table as ResultTable
from benchmarks.tables import at_most
from benchmarks.timing import AsyncLoop, measure_async
from freshcache import AsyncCache, AsyncEventBus, AsyncInvalidationManager, Event
from freshcache._async.events.transports.redis_streams import AsyncRedisStreamsTransport
from freshcache.integrations.sqlalchemy import (
    AsyncBaseRepository,
    AsyncOutboxRelay,
    SessionInvalidation,
    rules_from_models,
)
from tests.integrations.models import MODELS, Challenge

PLAIN = "SQLAlchemy alone, no cache"
REFERENCE = "outbox row alone, no events"
IN_PROCESS = "events on, in-process bus"
STREAMS = "events on, Redis Streams bus"
GOAL = at_most(1.15)
IDLE = 3600.0  # the relays' loops never wake during a run


class _Challenges(AsyncBaseRepository[Challenge]):
    model = Challenge


def run(settings: Settings) -> list[ResultTable]:
    with _schema(settings.database_url) as connect_args:
        engine = create_engine(settings.database_url, connect_args=connect_args)
        try:
            challenge_id = _create_tables(engine)
        finally:
            engine.dispose()
        return [asyncio.run(_table(settings, connect_args, challenge_id))]


async def _table(
    settings: Settings, connect_args: dict[str, Any], challenge_id: int
) -> ResultTable:
    async with AsyncExitStack() as stack:
        engine = create_async_engine(settings.database_url, connect_args=connect_args)
        stack.push_async_callback(engine.dispose)
        cache = AsyncCache.from_url(settings.redis_url, namespace=settings.namespace)
        stack.push_async_callback(cache.aclose)
        stack.push_async_callback(cache.clear)
        manager = AsyncInvalidationManager(cache, rules_from_models(MODELS))
        stack.push_async_callback(manager.aclose)
        outbox = _outbox()
        handled: list[Event] = []
        buses = {
            IN_PROCESS: AsyncEventBus(source="bench"),
            STREAMS: AsyncEventBus(
                AsyncRedisStreamsTransport.from_url(
                    settings.redis_url, service="bench", namespace=settings.namespace
                ),
                source="bench",
            ),
        }
        buses[IN_PROCESS].subscribe("challenge.updated", handled.append)
        for bus in buses.values():
            stack.push_async_callback(bus.aclose)

        titles = itertools.count()
        lineup: Lineup[AsyncLoop] = Lineup()
        for name in (PLAIN, REFERENCE, IN_PROCESS, STREAMS):
            sessions = async_sessionmaker(engine, expire_on_commit=False)
            bus = buses.get(name)
            relay = AsyncOutboxRelay(engine, manager, outbox, interval=IDLE, bus=bus)
            stack.push_async_callback(relay.aclose)
            if name != PLAIN:
                hooks = SessionInvalidation(manager, outbox=outbox, relay=relay, bus=bus)
                hooks.install(sessions)
            repository = _Challenges(sessions, cache)

            async def updates(
                ops: int, repository: _Challenges = repository, relay: AsyncOutboxRelay = relay
            ) -> None:
                update = repository.update
                for _ in range(ops):
                    await update(challenge_id, title=f"title {next(titles)}")
                await relay.delete_applied()

            lineup.add(name, updates, GOAL if bus is not None else None)

        results = await measure_async(lineup.loops, rounds=settings.rounds, ops=settings.updates)
        if not handled or any(event.data["changed"] != ["title"] for event in handled):
            raise RuntimeError("outbox_events suite: the in-process handler missed the events")
        published = buses[STREAMS].metrics.published
        if not published:
            raise RuntimeError("outbox_events suite: nothing was published on Redis Streams")
    return lineup.table(
        results,
        suite="outbox_events",
        title="Single-row update on PostgreSQL with its domain event through the outbox: "
        "median latency, one caller",
        reference=REFERENCE,
        goal="a write with its event in the outbox row and published after the commit costs "
        "at most 1.15x the same write with the outbox row alone (events/no events ≤ 1.15x).",
    )
