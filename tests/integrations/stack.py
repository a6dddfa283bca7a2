"""The whole SQLAlchemy stack built from URLs: engine, cache, manager, relay, hooks, repositories.

A test builds it in its own process, and child processes build it again from the same
:class:`Settings` (a picklable value), so that every process works on one database schema
and one Redis namespace, as several application servers would.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from freshcache import AsyncCache, AsyncInvalidationManager
from freshcache.integrations.sqlalchemy import (
    AsyncOutboxRelay,
    SessionInvalidation,
    rules_from_models,
)

from .._async.hooked_sessions import OUTBOX, Challenges, Users
from .models import MODELS, Base


@dataclass(frozen=True)
class Settings:
    """Everything a process needs to build the stack; ``mode`` is ``"strict"`` or ``"commit"``."""

    database_url: str
    cache_url: str
    connect_args: dict[str, Any] = field(default_factory=dict)
    mode: str = "strict"
    pending_ttl: float = 60.0
    grace: float = 5.0
    relay_interval: float = 0.5
    pool_size: int = 5

    @classmethod
    def of(cls, database: Any, cache_url: str, **options: Any) -> Settings:
        """Settings on a ``Database`` of tests/integrations/conftest.py."""
        return cls(database.async_url, cache_url, dict(database.connect_args), **options)

    def but(self, **changes: Any) -> Settings:
        return replace(self, **changes)


@dataclass
class Stack:
    """One process's view of the application: what the reference service would build."""

    settings: Settings
    engine: AsyncEngine
    cache: AsyncCache
    manager: AsyncInvalidationManager
    relay: AsyncOutboxRelay
    invalidation: SessionInvalidation
    sessions: async_sessionmaker[AsyncSession]
    users: Users
    challenges: Challenges

    @classmethod
    def build(cls, settings: Settings) -> Stack:
        engine = create_async_engine(
            settings.database_url,
            connect_args=settings.connect_args,
            pool_size=settings.pool_size,
            max_overflow=settings.pool_size,
        )
        cache = AsyncCache.from_url(settings.cache_url)
        manager = AsyncInvalidationManager(
            cache, rules_from_models(MODELS), pending_ttl=settings.pending_ttl
        )
        relay = AsyncOutboxRelay(
            engine, manager, OUTBOX, grace=settings.grace, interval=settings.relay_interval
        )
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        invalidation = SessionInvalidation(
            manager,
            mode=settings.mode,  # type: ignore[arg-type]
            outbox=OUTBOX,
            relay=relay,
        )
        invalidation.install(sessions)
        return cls(
            settings,
            engine,
            cache,
            manager,
            relay,
            invalidation,
            sessions,
            Users(sessions, cache),
            Challenges(sessions, cache),
        )

    async def create_tables(self) -> None:
        """The reference models' tables and the outbox, in the settings' schema."""
        async with self.engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)

    async def outbox_pending(self) -> int:
        pending: int = (await self.relay.stats())["outbox_pending"]
        return pending

    async def aclose(self) -> None:
        await self.relay.aclose()
        await self.manager.aclose()
        await self.cache.aclose()
        await self.engine.dispose()

    async def __aenter__(self) -> Stack:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
