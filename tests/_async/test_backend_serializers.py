"""The conformance suite again, on each serializer: every one carries the same values exactly."""

from __future__ import annotations

import pytest

from freshcache._async.backends.base import AsyncBackend
from freshcache._async.backends.memory import AsyncMemoryBackend
from freshcache._async.backends.redis import AsyncRedisBackend
from freshcache.testing import AsyncBackendSuite

PICKLE_KEY = b"a test key of at least 16 bytes"


class RedisWithSerializer(AsyncBackendSuite):
    serializer = "json"

    @pytest.fixture(autouse=True)
    def _server(self, redis_url: str, namespace: str) -> None:
        self.redis_url = redis_url
        self.namespace = namespace

    async def make_backend(self) -> AsyncBackend:
        return AsyncRedisBackend.from_url(
            self.redis_url,
            namespace=self.namespace,
            serializer=self.serializer,
            pickle_key=PICKLE_KEY,
        )

    async def evict_tag_version(self, backend: AsyncBackend, tag: str) -> None:
        assert isinstance(backend, AsyncRedisBackend)
        assert 1 == await backend.client.delete(f"{{{self.namespace}}}:t:{tag}")

    async def restart(self, backend: AsyncBackend) -> AsyncBackend:
        assert isinstance(backend, AsyncRedisBackend)
        await backend.clear()
        return await self.make_backend()


class TestRedisMsgpack(RedisWithSerializer):
    serializer = "msgpack"


class TestRedisPickle(RedisWithSerializer):
    serializer = "pickle"


class TestMemoryMsgpack(AsyncBackendSuite):
    async def make_backend(self) -> AsyncBackend:
        return AsyncMemoryBackend(serializer="msgpack")

    async def evict_tag_version(self, backend: AsyncBackend, tag: str) -> None:
        assert isinstance(backend, AsyncMemoryBackend)
        del backend._versions[tag]

    async def restart(self, backend: AsyncBackend) -> AsyncBackend:
        return AsyncMemoryBackend(serializer="msgpack")
