"""The stack the session tests share: the reference models' tables, a memory cache, and
hooked sessions with an outbox and its relay, in either mode."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from freshcache import AsyncCache, AsyncEventBus, AsyncInvalidationManager, Rules
from freshcache.integrations.sqlalchemy import (
    AsyncBaseRepository,
    AsyncOutboxRelay,
    SessionInvalidation,
    outbox_table,
)
from freshcache.integrations.sqlalchemy._hooks import Mode
from freshcache.integrations.sqlalchemy._orm import AsyncSession, async_sessionmaker

from ..databases import Database
from ..integrations.models import Base, Challenge, User
from ..integrations.support import async_create_tables

OUTBOX = outbox_table(Base.metadata)


class Users(AsyncBaseRepository[User]):
    model = User


class Challenges(AsyncBaseRepository[Challenge]):
    model = Challenge


@dataclass
class Stack:
    cache: AsyncCache
    manager: AsyncInvalidationManager
    hooks: SessionInvalidation
    relay: AsyncOutboxRelay
    sessions: async_sessionmaker[AsyncSession]
    users: Users
    challenges: Challenges
    engine: Any
    database: Database
    bus: AsyncEventBus | None = None


@contextlib.asynccontextmanager
async def hooked_stack(
    database: Database,
    mode: Mode,
    rules: Rules,
    *,
    bus: AsyncEventBus | None = None,
    **engine_options: Any,
) -> AsyncIterator[Stack]:
    """The stack on ``database``'s new tables, its hooks in ``mode`` under ``rules`` (publishing
    on ``bus``, if given, through the outbox); closed on exit."""
    engine = database.async_engine(**engine_options)
    await async_create_tables(engine)
    cache = AsyncCache.from_url("memory://")
    manager = AsyncInvalidationManager(cache, rules)
    relay = AsyncOutboxRelay(engine, manager, OUTBOX, grace=60, interval=0.05, bus=bus)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    hooks = SessionInvalidation(manager, mode=mode, outbox=OUTBOX, relay=relay, bus=bus)
    hooks.install(sessions)
    try:
        yield Stack(
            cache,
            manager,
            hooks,
            relay,
            sessions,
            Users(sessions, cache),
            Challenges(sessions, cache),
            engine,
            database,
            bus,
        )
    finally:
        await relay.aclose()
        await manager.aclose()
        await engine.dispose()
