"""The Redis classes that load on first use are typed as the classes they are, not as ``object``."""

from __future__ import annotations

import redis
import redis.asyncio

from freshcache import (
    AsyncCache,
    AsyncRedisBackend,
    AsyncRedisStreamsTransport,
    RedisBackend,
    RedisStreamsTransport,
)


def lazy_names_are_typed(client: redis.Redis, async_client: redis.asyncio.Redis) -> None:
    async_transport = AsyncRedisStreamsTransport(async_client, service="app")
    transport = RedisStreamsTransport(client, service="app")
    backend: AsyncRedisBackend = AsyncRedisBackend.from_url("redis://127.0.0.1:6379/0")
    assert isinstance(backend.namespace, str)
    assert RedisBackend.from_url("redis://127.0.0.1:6379/0").client is not None
    assert async_transport.service == transport.service
    AsyncCache(backend)
    AsyncRedisStreamsTransport(async_client, service=1)  # type: ignore[arg-type]
