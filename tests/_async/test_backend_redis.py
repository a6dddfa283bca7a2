"""The Redis backend: the conformance suite on the real server, and what only Redis has."""

from __future__ import annotations

import datetime
import decimal
from collections.abc import AsyncIterator

import pytest
from redis.crc import key_slot

from freshcache import FillStatus, SerializationError, SignatureError
from freshcache._async.backends.base import AsyncBackend
from freshcache._async.backends.redis import AsyncRedisBackend
from freshcache.testing import AsyncBackendSuite

PICKLE_KEY = b"a test key of at least 16 bytes"


async def wipe(backend: AsyncRedisBackend, namespace: str) -> None:
    """Delete every key of ``namespace`` behind the backend's back, as a lost server would."""
    async for name in backend.client.scan_iter(match=f"{{{namespace}}}:*", count=10_000):
        await backend.client.unlink(name)


class TestRedisBackend(AsyncBackendSuite):
    @pytest.fixture(autouse=True)
    def _server(self, redis_url: str, namespace: str) -> None:
        self.redis_url = redis_url
        self.namespace = namespace

    async def make_backend(self) -> AsyncBackend:
        return AsyncRedisBackend.from_url(self.redis_url, namespace=self.namespace)

    async def evict_tag_version(self, backend: AsyncBackend, tag: str) -> None:
        assert isinstance(backend, AsyncRedisBackend)
        assert 1 == await backend.client.delete(f"{{{self.namespace}}}:t:{tag}")

    async def restart(self, backend: AsyncBackend) -> AsyncBackend:
        assert isinstance(backend, AsyncRedisBackend)
        await wipe(backend, self.namespace)
        return await self.make_backend()


@pytest.fixture
async def backend(redis_url: str, namespace: str) -> AsyncIterator[AsyncRedisBackend]:
    backend = AsyncRedisBackend.from_url(redis_url, namespace=namespace)
    yield backend
    await backend.aclose()


async def store(backend: AsyncRedisBackend, key: str, value: object, tags: list[str]) -> None:
    ticket = await backend.begin_fill(key, tags, token="filler", lease_ttl=None)
    assert await backend.fill(key, value, tags, ticket.versions, ttl=60, token=None)


async def test_scripts_survive_script_flush(backend: AsyncRedisBackend) -> None:
    """After SCRIPT FLUSH every script is sent again on NOSCRIPT and works."""
    await store(backend, "k", "v", ["t"])
    await backend.client.script_flush()

    assert "v" == await backend.get("k")
    assert {"k": "v"} == await backend.get_many(["k"])
    await backend.invalidate_tags(["t"])
    await backend.mark_pending(["t"], token="writer", ttl=30)
    await backend.clear_pending(["t"], token="writer", committed=True)
    ticket = await backend.begin_fill("k", ["t"], token="loader", lease_ttl=30)
    assert FillStatus.ACQUIRED is ticket.status
    await backend.release_lease("k", "loader")
    assert await backend.fill("k", "w", ["t"], ticket.versions, ttl=60, token=None)
    assert "w" == await backend.get("k", ["t"])


async def test_namespaces_do_not_see_each_other(
    backend: AsyncRedisBackend, redis_url: str, namespace: str
) -> None:
    """Two namespaces on one server share no entries, versions, marks or leases, and clear alone."""
    other = AsyncRedisBackend.from_url(redis_url, namespace=f"{namespace}-other")
    try:
        await store(backend, "k", "mine", ["t"])
        await store(other, "k", "theirs", ["t"])
        assert (
            FillStatus.ACQUIRED
            is (await other.begin_fill("leased", [], token="theirs", lease_ttl=30)).status
        )

        await other.invalidate_tags(["t"])
        await other.mark_pending(["held"], token="writer", ttl=30)
        assert "mine" == await backend.get("k", ["t"])
        assert {"held": None} == await backend.tag_versions(["held"])
        assert (
            FillStatus.ACQUIRED
            is (await backend.begin_fill("leased", [], token="mine", lease_ttl=30)).status
        )

        await other.clear()
        assert "mine" == await backend.get("k")
    finally:
        await other.clear()
        await other.aclose()


@pytest.mark.parametrize(
    ("serializer", "value"),
    [
        ("msgpack", {"bytes": b"\x00\xff", "list": [1, 2.5, None, True], "text": "ünï 🎉"}),
        (
            "pickle",
            {
                "tuple": (1, 2),
                "set": {3, 4},
                "when": datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.timezone.utc),
                "price": decimal.Decimal("9.99"),
            },
        ),
    ],
)
async def test_other_serializers_round_trip(
    redis_url: str, namespace: str, serializer: str, value: object
) -> None:
    """msgpack and signed pickle values come back equal through Redis, with and without a hint."""
    backend = AsyncRedisBackend.from_url(
        redis_url, namespace=namespace, serializer=serializer, pickle_key=PICKLE_KEY
    )
    try:
        await store(backend, "k", value, ["t"])

        assert value == await backend.get("k", ["t"])
        assert value == await backend.get("k")
        assert {"k": value} == await backend.get_many(["k"])
    finally:
        await backend.aclose()


async def test_tampered_pickle_is_refused(redis_url: str, namespace: str) -> None:
    """A pickle entry altered in Redis raises SignatureError instead of being unpickled."""
    backend = AsyncRedisBackend.from_url(
        redis_url, namespace=namespace, serializer="pickle", pickle_key=PICKLE_KEY
    )
    try:
        await store(backend, "k", {"role": "user"}, ["t"])
        name = f"{{{namespace}}}:e:k"
        data = await backend.client.get(name)
        await backend.client.set(name, data.replace(b"user", b"root"))

        with pytest.raises(SignatureError, match="signature does not match"):
            await backend.get("k", ["t"])
        with pytest.raises(SignatureError, match="signature does not match"):
            await backend.get("k")
        with pytest.raises(SignatureError, match="signature does not match"):
            await backend.get_many(["k"])
    finally:
        await backend.aclose()


async def test_pickle_signed_with_another_key_is_refused(redis_url: str, namespace: str) -> None:
    """An entry signed with another key is refused, like a tampered one."""
    writer = AsyncRedisBackend.from_url(
        redis_url, namespace=namespace, serializer="pickle", pickle_key=b"another key, 16+ bytes"
    )
    reader = AsyncRedisBackend.from_url(
        redis_url, namespace=namespace, serializer="pickle", pickle_key=PICKLE_KEY
    )
    try:
        await store(writer, "k", "secret", ["t"])

        with pytest.raises(SignatureError, match="signed with another key"):
            await reader.get("k", ["t"])
    finally:
        await writer.aclose()
        await reader.aclose()


async def test_entry_of_another_serializer_is_refused(redis_url: str, namespace: str) -> None:
    """A JSON backend reading a msgpack entry says which serializer wrote it."""
    writer = AsyncRedisBackend.from_url(redis_url, namespace=namespace, serializer="msgpack")
    reader = AsyncRedisBackend.from_url(redis_url, namespace=namespace)
    try:
        await store(writer, "k", "v", ["t"])

        with pytest.raises(SerializationError, match="written with the msgpack serializer"):
            await reader.get("k", ["t"])
        with pytest.raises(SerializationError, match="written with the msgpack serializer"):
            await reader.get("k")
    finally:
        await writer.aclose()
        await reader.aclose()


async def test_keys_carry_the_namespace_hash_tag(
    backend: AsyncRedisBackend, namespace: str
) -> None:
    """Entries, versions, marks and leases are all under {namespace}: one cluster slot."""
    await store(backend, "user:1", 1, ["user:1"])
    await backend.mark_pending(["held"], token="writer", ttl=30)
    await backend.begin_fill("leased", [], token="loader", lease_ttl=30)

    prefix = f"{{{namespace}}}"
    names = [f"{prefix}:e:user:1", f"{prefix}:t:user:1", f"{prefix}:t:held", f"{prefix}:h:held"]
    names.append(f"{prefix}:l:leased")

    assert len(names) == await backend.client.exists(*names)
    assert {key_slot(prefix.encode())} == {key_slot(name.encode()) for name in names}


async def test_every_key_expires(backend: AsyncRedisBackend, namespace: str) -> None:
    """Every key the backend writes has a TTL, so nothing per key or per tag grows forever."""
    await store(backend, "user:1", 1, ["user:1"])
    await backend.mark_pending(["held"], token="writer", ttl=30)
    await backend.begin_fill("leased", ["new-tag"], token="loader", lease_ttl=30)
    await backend.mark_pending(["rolled-back"], token="writer", ttl=30)
    await backend.clear_pending(["rolled-back"], token="writer", committed=False)

    match = f"{{{namespace}}}:*"
    names = [name async for name in backend.client.scan_iter(match=match, count=10_000)]

    assert 6 == len(names)
    for name in names:
        assert 0 < await backend.client.pttl(name), name


async def test_fill_extends_a_short_tag_version(redis_url: str, namespace: str) -> None:
    """A fill keeps its tags' versions at least as long as the entry, so it is not lost early."""
    backend = AsyncRedisBackend.from_url(redis_url, namespace=namespace, tag_ttl=1)
    try:
        await store(backend, "k", "v", ["t"])

        assert 59_000 < await backend.client.pttl(f"{{{namespace}}}:t:t")
    finally:
        await backend.aclose()
