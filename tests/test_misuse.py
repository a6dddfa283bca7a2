"""Sync and async parts do not mix: every constructor refuses a collaborator of the other kind."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio
from sqlalchemy import MetaData, create_engine
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import sessionmaker

from freshcache import (
    AsyncCache,
    AsyncConsistencyMonitor,
    AsyncInvalidationManager,
    AsyncMemoryBackend,
    AsyncRetryQueue,
    Cache,
    ConfigurationError,
    ConsistencyMonitor,
    InvalidationManager,
    MemoryBackend,
    RetryQueue,
)
from freshcache._async.backends.redis import AsyncRedisBackend
from freshcache._sync.backends.redis import RedisBackend
from freshcache.integrations.sqlalchemy import (
    AsyncBaseRepository,
    AsyncOutboxRelay,
    BaseRepository,
    OutboxRelay,
    SessionInvalidation,
    outbox_table,
)

from .integrations.models import User

OUTBOX = outbox_table(MetaData())


class Users(BaseRepository[User]):
    model = User


class AsyncUsers(AsyncBaseRepository[User]):
    model = User


class Parts:
    """One of each collaborator, of both kinds; nothing here touches a server."""

    def __init__(self, directory: Path) -> None:
        url = f"sqlite:///{directory / 'misuse.db'}"
        self.engine = create_engine(url)
        self.async_engine = create_async_engine(url.replace("sqlite:", "sqlite+aiosqlite:"))
        self.sessions = sessionmaker(self.engine)
        self.async_sessions = async_sessionmaker(self.async_engine)
        self.cache = Cache(MemoryBackend())
        self.async_cache = AsyncCache(AsyncMemoryBackend())
        self.manager = InvalidationManager(self.cache)
        self.async_manager = AsyncInvalidationManager(self.async_cache)
        self.relay = OutboxRelay(self.engine, self.manager, OUTBOX)
        self.async_relay = AsyncOutboxRelay(self.async_engine, self.async_manager, OUTBOX)


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[Parts]:
    made = Parts(tmp_path)
    yield made
    made.manager.close()
    made.engine.dispose()


MISUSES: list[tuple[str, Callable[[Parts], Any], str]] = [
    (
        "sync manager, async cache",
        lambda p: InvalidationManager(p.async_cache),
        "InvalidationManager needs a Cache, not an AsyncCache: use AsyncInvalidationManager with an AsyncCache",
    ),
    (
        "async manager, sync cache",
        lambda p: AsyncInvalidationManager(p.cache),
        "AsyncInvalidationManager needs an AsyncCache, not a Cache: use InvalidationManager with a Cache",
    ),
    (
        "sync manager, async failure sink",
        lambda p: InvalidationManager(p.cache, failure_sink=AsyncRetryQueue(p.async_cache)),
        "InvalidationManager needs failure_sink.put to be a plain method, not the coroutine function AsyncRetryQueue.put: use AsyncInvalidationManager with it",
    ),
    (
        "async manager, sync failure sink",
        lambda p: AsyncInvalidationManager(p.async_cache, failure_sink=RetryQueue(p.cache)),
        "AsyncInvalidationManager needs failure_sink.put to be a coroutine function, not the plain RetryQueue.put: use InvalidationManager with it",
    ),
    (
        "sync retry queue, async cache",
        lambda p: RetryQueue(p.async_cache),
        "RetryQueue needs a Cache, not an AsyncCache: use AsyncRetryQueue with an AsyncCache",
    ),
    (
        "sync consistency monitor, async cache",
        lambda p: ConsistencyMonitor(p.async_cache),
        "ConsistencyMonitor needs a Cache, not an AsyncCache: use AsyncConsistencyMonitor with an AsyncCache",
    ),
    (
        "async consistency monitor, sync cache",
        lambda p: AsyncConsistencyMonitor(p.cache),
        "AsyncConsistencyMonitor needs an AsyncCache, not a Cache: use ConsistencyMonitor with a Cache",
    ),
    (
        "async retry queue, sync cache",
        lambda p: AsyncRetryQueue(p.cache),
        "AsyncRetryQueue needs an AsyncCache, not a Cache: use RetryQueue with a Cache",
    ),
    (
        "sync cache, async backend",
        lambda p: Cache(AsyncMemoryBackend()),  # type: ignore[arg-type]
        "Cache needs a Backend, not an AsyncMemoryBackend: use AsyncCache with an AsyncMemoryBackend",
    ),
    (
        "async cache, sync backend",
        lambda p: AsyncCache(MemoryBackend()),  # type: ignore[arg-type]
        "AsyncCache needs an AsyncBackend, not a MemoryBackend: use Cache with a MemoryBackend",
    ),
    (
        "sync redis backend, async client",
        lambda p: RedisBackend(redis.asyncio.Redis()),
        "RedisBackend needs a redis.client.Redis or a redis.cluster.RedisCluster, not a redis.asyncio.client.Redis: use AsyncRedisBackend with a redis.asyncio.client.Redis",
    ),
    (
        "async redis backend, sync client",
        lambda p: AsyncRedisBackend(redis.Redis()),
        "AsyncRedisBackend needs a redis.asyncio.client.Redis or a redis.asyncio.cluster.RedisCluster, not a redis.client.Redis: use RedisBackend with a redis.client.Redis",
    ),
    (
        "sync repository, async sessions",
        lambda p: Users(p.async_sessions, p.cache),
        "BaseRepository needs a sessionmaker, not an async_sessionmaker: use AsyncBaseRepository with an async_sessionmaker",
    ),
    (
        "sync repository, async cache",
        lambda p: Users(p.sessions, p.async_cache),
        "BaseRepository needs a Cache, not an AsyncCache: use AsyncBaseRepository with an AsyncCache",
    ),
    (
        "async repository, sync sessions",
        lambda p: AsyncUsers(p.sessions, p.async_cache),
        "AsyncBaseRepository needs an async_sessionmaker, not a sessionmaker: use BaseRepository with a sessionmaker",
    ),
    (
        "async repository, sync cache",
        lambda p: AsyncUsers(p.async_sessions, p.cache),
        "AsyncBaseRepository needs an AsyncCache, not a Cache: use BaseRepository with a Cache",
    ),
    (
        "sync relay, async engine",
        lambda p: OutboxRelay(p.async_engine, p.manager, OUTBOX),
        "OutboxRelay needs an Engine, not an AsyncEngine: use AsyncOutboxRelay with an AsyncEngine",
    ),
    (
        "sync relay, async manager",
        lambda p: OutboxRelay(p.engine, p.async_manager, OUTBOX),
        "OutboxRelay needs an InvalidationManager, not an AsyncInvalidationManager: use AsyncOutboxRelay with an AsyncInvalidationManager",
    ),
    (
        "async relay, sync engine",
        lambda p: AsyncOutboxRelay(p.engine, p.async_manager, OUTBOX),
        "AsyncOutboxRelay needs an AsyncEngine, not an Engine: use OutboxRelay with an Engine",
    ),
    (
        "async relay, sync manager",
        lambda p: AsyncOutboxRelay(p.async_engine, p.manager, OUTBOX),
        "AsyncOutboxRelay needs an AsyncInvalidationManager, not an InvalidationManager: use OutboxRelay with an InvalidationManager",
    ),
    (
        "session hooks, a cache for a manager",
        lambda p: SessionInvalidation(p.cache),
        "SessionInvalidation needs an AsyncInvalidationManager or an InvalidationManager, not a Cache",
    ),
    (
        "session hooks, sync manager, async relay",
        lambda p: SessionInvalidation(p.manager, relay=p.async_relay),
        "SessionInvalidation with an InvalidationManager needs an OutboxRelay, not an AsyncOutboxRelay",
    ),
    (
        "session hooks, async manager, sync relay",
        lambda p: SessionInvalidation(p.async_manager, relay=p.relay),
        "SessionInvalidation with an AsyncInvalidationManager needs an AsyncOutboxRelay, not an OutboxRelay",
    ),
    (
        "session hooks, async manager, sync sessions",
        lambda p: SessionInvalidation(p.async_manager).install(p.sessions),
        "a sessionmaker needs a sync InvalidationManager",
    ),
    (
        "session hooks, sync manager, async sessions",
        lambda p: SessionInvalidation(p.manager).install(p.async_sessions),
        "an async_sessionmaker needs an AsyncInvalidationManager",
    ),
]


@pytest.mark.parametrize(
    ("build", "message"), [m[1:] for m in MISUSES], ids=[m[0] for m in MISUSES]
)
def test_a_collaborator_of_the_other_kind_is_refused_at_construction(
    parts: Parts, build: Callable[[Parts], Any], message: str
) -> None:
    """Handing a sync part an async collaborator (or the reverse) raises ConfigurationError naming both kinds."""
    with pytest.raises(ConfigurationError) as raised:
        build(parts)

    assert message == str(raised.value)


def test_a_sync_manager_on_an_async_cache_does_not_report_success(tmp_path: Path) -> None:
    """The misuse that used to leave un-awaited coroutines and report the invalidation applied now fails before any call."""
    cache = AsyncCache(AsyncMemoryBackend())

    with pytest.raises(ConfigurationError, match="use AsyncInvalidationManager"):
        InvalidationManager(cache).invalidate_tags(["user:1"])


def test_an_unrelated_object_is_refused_with_its_type() -> None:
    """Something that is neither kind (a URL where a cache belongs) is named in the error too."""
    with pytest.raises(ConfigurationError) as raised:
        InvalidationManager("redis://localhost")  # type: ignore[arg-type]

    assert "InvalidationManager needs a Cache, not a str" == str(raised.value)
