"""The memory backend: the conformance suite, and its bounds."""

from __future__ import annotations

import pytest

from freshcache import PENDING_VERSION, ConfigurationError
from freshcache._async.backends.base import AsyncBackend
from freshcache._async.backends.memory import AsyncMemoryBackend
from freshcache.testing import AsyncBackendSuite


class TestMemoryBackend(AsyncBackendSuite):
    async def make_backend(self) -> AsyncBackend:
        return AsyncMemoryBackend()

    async def evict_tag_version(self, backend: AsyncBackend, tag: str) -> None:
        assert isinstance(backend, AsyncMemoryBackend)
        del backend._versions[tag]

    async def restart(self, backend: AsyncBackend) -> AsyncBackend:
        return AsyncMemoryBackend()


async def fill(backend: AsyncMemoryBackend, key: str, value: object, tags: list[str]) -> bool:
    ticket = await backend.begin_fill(key, tags, token="filler", lease_ttl=None)
    return await backend.fill(key, value, tags, ticket.versions, ttl=60, token=None)


async def test_entries_bound_evicts_the_least_recently_used() -> None:
    """Past max_entries, the entry read or written longest ago goes first."""
    backend = AsyncMemoryBackend(max_entries=3)
    for key in ["a", "b", "c"]:
        assert await fill(backend, key, key, [])
    assert "a" == await backend.get("a")

    assert await fill(backend, "d", "d", [])

    assert 3 == len(backend)
    assert {"a": "a", "c": "c", "d": "d"} == await backend.get_many(["a", "b", "c", "d"])


async def test_bytes_bound_evicts_until_the_values_fit() -> None:
    """Past max_bytes, least recently used entries go until the rest fit; a bigger value is not stored."""
    backend = AsyncMemoryBackend(max_bytes=10, sizeof=len)
    assert await fill(backend, "a", "aaaa", [])
    assert await fill(backend, "b", "bbbb", [])
    assert "aaaa" == await backend.get("a")

    assert await fill(backend, "c", "cccc", [])
    assert {"a": "aaaa", "c": "cccc"} == await backend.get_many(["a", "b", "c"])

    assert not await fill(backend, "huge", "h" * 11, [])
    assert {"a": "aaaa", "c": "cccc"} == await backend.get_many(["a", "c", "huge"])


async def test_bytes_bound_counts_replaced_and_deleted_entries() -> None:
    """Replacing or deleting an entry gives its bytes back to the bound."""
    backend = AsyncMemoryBackend(max_bytes=10, sizeof=len)
    assert await fill(backend, "a", "a" * 8, [])
    assert await fill(backend, "a", "a" * 2, [])
    assert 1 == await backend.delete(["a"])

    assert await fill(backend, "b", "b" * 5, [])
    assert await fill(backend, "c", "c" * 5, [])

    assert {"b": "bbbbb", "c": "ccccc"} == await backend.get_many(["b", "c"])


async def test_tags_bound_keeps_working() -> None:
    """Past max_tags the oldest versions go: their entries miss, newer ones hit, fills go on."""
    backend = AsyncMemoryBackend(max_tags=4)
    for n in range(20):
        assert await fill(backend, f"user:{n}", n, [f"user:{n}"])

    assert len(backend._versions) <= 4
    assert 19 == await backend.get("user:19", ["user:19"])
    assert {} == await backend.get_many([f"user:{n}" for n in range(10)])
    await backend.invalidate_tags(["user:0"])
    assert await fill(backend, "user:0", 0, ["user:0"])
    assert 0 == await backend.get("user:0", ["user:0"])


async def test_tags_bound_never_forgets_a_pending_mark() -> None:
    """A tag held by a writer keeps its pending mark however many tags come after it."""
    backend = AsyncMemoryBackend(max_tags=3)
    await backend.mark_pending(["held"], token="writer", ttl=30)

    for n in range(10):
        assert await fill(backend, f"k{n}", n, [f"t{n}"])

    assert {"held": PENDING_VERSION} == await backend.tag_versions(["held"])
    assert len(backend._versions) <= 4


async def test_values_are_kept_as_given() -> None:
    """The memory backend keeps an equal copy of the value, of the same types; hits share that copy."""
    backend = AsyncMemoryBackend()
    value = ({1, 2}, (3, 4), b"bytes")
    assert await fill(backend, "k", value, ["t"])

    kept = await backend.get("k", ["t"])
    assert value == kept
    assert value is not kept
    assert [set, tuple, bytes] == [type(part) for part in kept]
    assert kept is await backend.get("k", ["t"])


async def test_injected_clock_drives_expiry() -> None:
    """TTLs are measured on the clock given, so expiry needs no sleeping."""
    now = [1000.0]
    backend = AsyncMemoryBackend(clock=lambda: now[0])
    ticket = await backend.begin_fill("k", [], token="t", lease_ttl=None)
    assert await backend.fill("k", "v", [], ticket.versions, ttl=5, token=None)

    now[0] += 4.9
    assert "v" == await backend.get("k")
    now[0] += 0.2
    assert 0 == len(await backend.get_many(["k"]))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_entries": 0}, "max_entries must be at least 1, not 0"),
        ({"max_bytes": 0}, "max_bytes must be at least 1, not 0"),
        ({"max_tags": 0}, "max_tags must be at least 1, not 0"),
    ],
)
def test_bounds_must_be_positive(options: dict[str, int], message: str) -> None:
    """A bound below one is a configuration error that names it."""
    with pytest.raises(ConfigurationError, match=message):
        AsyncMemoryBackend(**options)


async def test_dead_leases_and_marks_are_swept_without_being_touched() -> None:
    """Leases and pending marks whose holders died are dropped after their TTL even if nobody touches them again."""
    now = [0.0]
    backend = AsyncMemoryBackend(clock=lambda: now[0])
    for n in range(100):
        await backend.begin_fill(f"k{n}", [], token="dead", lease_ttl=1.0)
        await backend.mark_pending([f"t{n}"], token="dead", ttl=1.0)
    now[0] = 5.0
    for _ in range(2048):
        await backend.begin_fill("other", [], token="live", lease_ttl=None)

    assert {} == backend._leases
    assert {} == backend._holds
