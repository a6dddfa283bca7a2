"""The service's parts, wired the way freshcache's README shows: cache, rules, manager, hooks, relay, bus."""

from __future__ import annotations

import asyncio
import os
import random
import socket
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from freshcache import (
    AsyncCache,
    AsyncEventBus,
    AsyncInvalidationManager,
    ConfigurationError,
    invalidation_handlers,
)
from freshcache.app.models import OUTBOX
from freshcache.app.reads import Aggregates
from freshcache.app.repositories import Challenges, Evaluations, Users
from freshcache.app.rules import service_rules
from freshcache.app.settings import Settings
from freshcache.integrations.sqlalchemy import AsyncOutboxRelay, SessionInvalidation


class DelayedFillCache(AsyncCache):
    """``FRESHCACHE_TEST_FILL_DELAY``: each fill waits up to ``fill_delay`` seconds after its load.

    A test hook that widens the window in which a write can land between a load and its
    fill, the window the versioned tags close.
    """

    fill_delay = 0.0

    async def get_or_load(self, key: str, loader: Any, **options: Any) -> Any:
        async def load_then_wait() -> Any:
            value = await loader()
            await asyncio.sleep(random.uniform(0, self.fill_delay))
            return value

        return await super().get_or_load(key, load_then_wait, **options)


def cache_of(settings: Settings) -> AsyncCache:
    """The cache of ``settings``: the test hook's, or the plain one (``none`` stores nothing)."""
    if settings.test_fill_delay > 0:
        cache = DelayedFillCache.from_url(settings.cache_url)
        assert isinstance(cache, DelayedFillCache)
        cache.fill_delay = settings.test_fill_delay
        return cache
    return AsyncCache.from_url(settings.cache_url)


@dataclass
class Service:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    cache: AsyncCache
    manager: AsyncInvalidationManager
    bus: AsyncEventBus
    relay: AsyncOutboxRelay
    users: Users
    challenges: Challenges
    evaluations: Evaluations
    aggregates: Aggregates


def database_engine(url: str) -> AsyncEngine:
    """An async engine; SQLite enforces its foreign keys (its cascades are the hooks' to see)."""
    engine = create_async_engine(url)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine.sync_engine, "connect")
        def _foreign_keys(connection: Any, _: Any) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

    return engine


def event_bus(settings: Settings, cache: AsyncCache) -> AsyncEventBus:
    """In-process events, or Redis Streams on the cache's own Redis client and namespace."""
    source = f"freshcache-app:{socket.gethostname()}:{os.getpid()}"
    if settings.events == "memory":
        return AsyncEventBus(source=source)
    from freshcache import AsyncRedisBackend, AsyncRedisStreamsTransport

    if not isinstance(cache.backend, AsyncRedisBackend):
        raise ConfigurationError(
            f"FRESHCACHE_EVENTS=redis needs a Redis cache (FRESHCACHE_CACHE_URL=redis://...), "
            f"not {settings.cache_url!r}"
        )
    transport = AsyncRedisStreamsTransport(
        cache.backend.client, service="freshcache-app", namespace=cache.backend.namespace
    )
    return AsyncEventBus(transport, source=source)


def build(settings: Settings) -> Service:
    """Every part, nothing started: ``start`` and ``stop`` run them."""
    assert settings.database_url is not None  # filled by Settings
    if settings.database_url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = database_engine(settings.database_url)
    cache = cache_of(settings)  # "none": a backend that stores nothing
    manager = AsyncInvalidationManager(cache, service_rules(), strict_wait=settings.strict_wait)
    bus = event_bus(settings, cache)
    relay = AsyncOutboxRelay(
        engine, manager, OUTBOX, bus=bus, elect=True
    )  # one relay per database scans
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    if not settings.test_skip_invalidation:
        SessionInvalidation(
            manager, mode=settings.consistency, outbox=OUTBOX, relay=relay, bus=bus
        ).install(sessions)
    service = Service(
        settings,
        engine,
        sessions,
        cache,
        manager,
        bus,
        relay,
        Users(sessions, cache),
        Challenges(sessions, cache),
        Evaluations(sessions, cache),
        Aggregates(sessions, cache),
    )
    if settings.test_skip_invalidation:
        return service  # the broken service of the test hook: nothing invalidates
    # Redundant coverage: the hooks invalidate on commit; the domain events the
    # repositories publish invalidate again where they are consumed (another process, with Redis).
    invalidation_handlers(
        bus,
        manager,
        {
            f"{entity}.{what}": entity
            for entity in ("user", "challenge", "evaluation")
            for what in ("created", "updated", "deleted")
        },
    )
    return service
