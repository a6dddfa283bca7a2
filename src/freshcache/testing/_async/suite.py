"""The backend conformance suite: every backend, built in or a user's, passes it.

Subclass :class:`AsyncBackendSuite` in a test module under a name pytest collects, and
implement three methods::

    class TestMyBackend(AsyncBackendSuite):
        async def make_backend(self) -> AsyncBackend:
            return MyBackend(...)

        async def evict_tag_version(self, backend: AsyncBackend, tag: str) -> None:
            ...  # drop the tag's version the way the store would evict it

        async def restart(self, backend: AsyncBackend) -> AsyncBackend:
            ...  # a backend on the same store after it lost its data

Each test gets a fresh backend from the ``backend`` fixture and closes it after. Most
values are JSON-shaped; the value tests hold a backend to freshcache's rule: a value
comes back equal and of the same type (datetime, Decimal, UUID, bytes, tuple, set and
the rest of :data:`EVERY_KIND`), or its fill raises SerializationError and stores nothing.
"""

from __future__ import annotations

import abc
import datetime
import decimal
import re
import uuid
import zoneinfo
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from freshcache import (
    MISSING,
    PENDING_VERSION,
    AsyncBackend,
    AsyncCache,
    FillStatus,
    InvalidKeyError,
    SerializationError,
)
from freshcache._synchronization import async_sleep

# Short enough to keep the suite fast, long enough for a slow CI machine to act in time.
SHORT_TTL = 0.2
PAST_SHORT_TTL = 0.3


# One of every kind of value the cache carries exactly, beside the JSON shapes.
EVERY_KIND: dict[str, Any] = {
    "datetime": datetime.datetime(2024, 5, 1, 12, 30, 15, 123456),
    "datetime_utc": datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.timezone.utc),
    "datetime_offset": datetime.datetime(
        2024, 5, 1, tzinfo=datetime.timezone(datetime.timedelta(hours=-3, minutes=-30))
    ),
    # The second 02:30 of the night Paris leaves summer time: the fold must survive.
    "datetime_zone": datetime.datetime(
        2024, 10, 27, 2, 30, fold=1, tzinfo=zoneinfo.ZoneInfo("Europe/Paris")
    ),
    "date": datetime.date(1815, 12, 10),
    "time": datetime.time(23, 59, 59, 999999),
    "timedelta": datetime.timedelta(days=-2, seconds=5, microseconds=7),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "decimal": decimal.Decimal("9.90"),
    "decimal_exponent": decimal.Decimal("1E+3"),
    "bytes": b"\x00\xff~{",
    "bytearray": bytearray(b"\x01"),
    "tuple": (1, ("nested", 2.5)),
    "set": {1, "two", (3, 4)},
    "frozenset": frozenset({"a", "b"}),
    "int_keys": {1: "one", 2: ["two"]},
    "tuple_keys": {(1, 2): "pair"},
    "big_int": 2**100,
    "negative_big_int": -(2**64),
    "largest_u64": 2**64 - 1,
    "infinity": float("inf"),
    "negative_zero": -0.0,
    "dict_like_a_tag": {"~dt": "not a date"},
    "list_of_kinds": [datetime.date(2024, 1, 1), None, {"~": 1}],
}


def type_shape(value: Any) -> Any:
    """The types of ``value`` and of everything in it (and a datetime's zone), to compare."""
    kind = type(value)
    if kind is dict:
        return (dict, sorted((repr(k), type_shape(k), type_shape(v)) for k, v in value.items()))
    if kind in (list, tuple):
        return (kind, [type_shape(item) for item in value])
    if kind in (set, frozenset):
        return (kind, sorted(repr(type_shape(item)) for item in value))
    if kind is datetime.datetime or kind is datetime.time:
        return (kind, type(value.tzinfo), str(value.tzinfo), getattr(value, "fold", 0))
    return kind


async def _store(
    backend: AsyncBackend, key: str, value: Any, tags: Sequence[str] = (), *, ttl: float = 60.0
) -> tuple[str, ...]:
    """Fill ``key`` at the current versions of ``tags``; those versions."""
    ticket = await backend.begin_fill(key, tags, token="filler", lease_ttl=None)
    assert FillStatus.ACQUIRED is ticket.status
    assert await backend.fill(key, value, tags, ticket.versions, ttl=ttl, token=None)
    return ticket.versions


async def _begin(
    backend: AsyncBackend,
    key: str,
    tags: Sequence[str],
    token: str = "loader",
) -> FillStatus:
    """The status of a fill of ``key`` begun by ``token``, with a lease."""
    return (await backend.begin_fill(key, tags, token=token, lease_ttl=30.0)).status


class AsyncBackendSuite(abc.ABC):
    """The behaviour every :class:`AsyncBackend` owes the cache."""

    @abc.abstractmethod
    async def make_backend(self) -> AsyncBackend:
        """A new backend on an empty store of this test's own."""

    @abc.abstractmethod
    async def evict_tag_version(self, backend: AsyncBackend, tag: str) -> None:
        """Lose ``tag``'s version the way the store can (eviction, expiry), entries kept."""

    @abc.abstractmethod
    async def restart(self, backend: AsyncBackend) -> AsyncBackend:
        """A new backend on ``backend``'s store after a restart that lost all its data.

        The suite closes the backend returned; the fixture closes ``backend``.
        """

    @pytest.fixture
    async def backend(self) -> AsyncIterator[AsyncBackend]:
        """A fresh backend for one test, closed after it."""
        backend = await self.make_backend()
        try:
            yield backend
        finally:
            await backend.aclose()

    # Reads and writes

    async def test_ping_answers(self, backend: AsyncBackend) -> None:
        """ping returns when the backend is reachable."""
        await backend.ping()

    async def test_absent_key_is_missing(self, backend: AsyncBackend) -> None:
        """get of a key never filled answers MISSING, with or without a tags hint."""
        assert MISSING is await backend.get("user:1")
        assert MISSING is await backend.get("user:1", ["user:1"])

    async def test_fill_then_get(self, backend: AsyncBackend) -> None:
        """A filled value is returned by get until something changes."""
        await _store(backend, "user:1", {"name": "ada"}, ["user:1"])

        assert {"name": "ada"} == await backend.get("user:1", ["user:1"])
        assert {"name": "ada"} == await backend.get("user:1")

    async def test_none_is_a_value_not_a_miss(self, backend: AsyncBackend) -> None:
        """A filled None comes back as None, distinct from MISSING."""
        await _store(backend, "user:404", None, ["user:404"])

        assert None is await backend.get("user:404", ["user:404"])
        assert {"user:404": None} == await backend.get_many(["user:404"])

    async def test_fill_replaces_the_previous_value(self, backend: AsyncBackend) -> None:
        """A second fill of a key replaces the first, tags included."""
        await _store(backend, "user:1", "first", ["a"])
        await _store(backend, "user:1", "second", ["b"])
        await backend.invalidate_tags(["a"])

        assert "second" == await backend.get("user:1", ["b"])
        assert "second" == await backend.get("user:1")

    async def test_get_many_leaves_out_misses(self, backend: AsyncBackend) -> None:
        """get_many answers the valid entries only: absent and stale keys are left out."""
        await _store(backend, "user:1", 1, ["user:1"])
        await _store(backend, "user:2", 2, ["user:2"])
        await _store(backend, "plain", "untagged")
        await backend.invalidate_tags(["user:2"])

        found = await backend.get_many(["user:1", "user:2", "user:3", "plain"])

        assert {"user:1": 1, "plain": "untagged"} == found
        assert {} == await backend.get_many([])

    async def test_tags_hint_does_not_change_the_answer(self, backend: AsyncBackend) -> None:
        """get with the right tags, a wrong hint or no hint agrees, before and after an invalidation."""
        await _store(backend, "k", "v", ["a", "b"])
        await _store(backend, "bare", "untagged")
        hints: list[list[str] | None] = [
            None,
            [],
            ["a", "b"],
            ["b", "a"],
            ["a"],
            ["c"],
            ["a", "b", "c"],
        ]

        for hint in hints:
            assert "v" == await backend.get("k", hint), hint
            assert "untagged" == await backend.get("bare", hint), hint
        await backend.invalidate_tags(["a"])
        for hint in hints:
            assert MISSING is await backend.get("k", hint), hint
            assert "untagged" == await backend.get("bare", hint), hint

    async def test_get_now_answers_as_get(self, backend: AsyncBackend) -> None:
        """A backend offering get_now answers through it what get answers: hits, a stored None, stale, deleted and expired entries."""
        get_now = backend.get_now
        if get_now is None:
            pytest.skip(f"{backend.name} offers no get_now: the cache awaits get")
        await _store(backend, "k", "v", ["a", "b"])
        await _store(backend, "none", None, ["a"])
        await _store(backend, "short", "v", ["t"], ttl=SHORT_TTL)
        keys = ["k", "none", "short", "absent"]
        hints: list[list[str] | None] = [None, ["a", "b"], ["c"]]

        async def both() -> list[Any]:
            answers = [[await backend.get(key, hint) for hint in hints] for key in keys]
            assert answers == [[get_now(key, hint) for hint in hints] for key in keys]
            return [row[0] for row in answers]

        assert ["v", None, "v", MISSING] == await both()
        await backend.invalidate_tags(["b"])
        await backend.delete(["none"])
        await async_sleep(PAST_SHORT_TTL)
        assert [MISSING] * 4 == await both()

    async def test_delete_counts_the_entries_that_existed(self, backend: AsyncBackend) -> None:
        """delete removes the entries given and answers how many existed."""
        await _store(backend, "user:1", 1)
        await _store(backend, "user:2", 2)

        assert 2 == await backend.delete(["user:1", "user:2", "user:3"])
        assert MISSING is await backend.get("user:1")
        assert 0 == await backend.delete(["user:1"])
        assert 0 == await backend.delete([])

    async def test_entry_expires_after_its_ttl(self, backend: AsyncBackend) -> None:
        """An entry is a hit within its TTL; after it, a miss that delete no longer counts."""
        await _store(backend, "short", "v", ["t"], ttl=SHORT_TTL)
        await _store(backend, "short:2", "v", ["t"], ttl=SHORT_TTL)
        await _store(backend, "long", "v", ["t"])
        assert "v" == await backend.get("short", ["t"])

        await async_sleep(PAST_SHORT_TTL)

        assert 0 == await backend.delete(["short:2"])
        assert 0 == await backend.delete_pattern("short*")
        assert MISSING is await backend.get("short", ["t"])
        assert MISSING is await backend.get("short")
        assert {"long": "v"} == await backend.get_many(["short", "long"])

    # Tag versions

    async def test_invalidate_makes_dependent_entries_miss(self, backend: AsyncBackend) -> None:
        """Invalidating a tag makes every entry carrying it a miss; others stay hits."""
        await _store(backend, "user:1", 1, ["user:1", "users"])
        await _store(backend, "user:2", 2, ["user:2", "users"])
        await _store(backend, "challenge:1", 3, ["challenge:1"])

        await backend.invalidate_tags(["users"])

        assert {"challenge:1": 3} == await backend.get_many(["user:1", "user:2", "challenge:1"])
        assert MISSING is await backend.get("user:1", ["user:1", "users"])

    async def test_invalidate_of_unknown_tags_is_harmless(self, backend: AsyncBackend) -> None:
        """Invalidating tags nobody used, or no tags at all, changes nothing else."""
        await _store(backend, "k", "v", ["t"])

        await backend.invalidate_tags(["never-seen"])
        await backend.invalidate_tags([])

        assert "v" == await backend.get("k", ["t"])

    async def test_begin_fill_creates_and_keeps_versions(self, backend: AsyncBackend) -> None:
        """begin_fill gives absent tags a version and answers the same one until invalidated."""
        first = await backend.begin_fill("k", ["a", "b"], token="one", lease_ttl=None)
        again = await backend.begin_fill("k", ["a", "b"], token="two", lease_ttl=None)

        assert FillStatus.ACQUIRED is first.status
        assert first.versions == again.versions
        assert 2 == len(set(first.versions))
        expected = dict(zip(["a", "b"], first.versions, strict=True))
        assert expected == await backend.tag_versions(["a", "b"])

    async def test_versions_are_unique_across_invalidations(self, backend: AsyncBackend) -> None:
        """Every invalidate and fill cycle gives the tag a version it never had before."""
        seen: list[str] = []
        for cycle in range(50):
            seen.extend(await _store(backend, "k", cycle, ["t"]))
            assert cycle == await backend.get("k", ["t"])
            await backend.invalidate_tags(["t"])
            assert MISSING is await backend.get("k", ["t"])

        assert 50 == len(set(seen))
        assert PENDING_VERSION not in seen

    async def test_evicted_version_never_matches_again(self, backend: AsyncBackend) -> None:
        """After a tag's version is evicted its old entries stay misses and new versions differ."""
        seen = set(await _store(backend, "k", "old", ["t"]))

        for _ in range(10):
            await self.evict_tag_version(backend, "t")
            assert MISSING is await backend.get("k", ["t"])
            assert MISSING is await backend.get("k")
            ticket = await backend.begin_fill("other", ["t"], token="loader", lease_ttl=None)
            assert set() == seen & set(ticket.versions)
            seen.update(ticket.versions)
            assert MISSING is await backend.get("k", ["t"])
            assert {} == await backend.get_many(["k"])

    async def test_restart_never_brings_back_an_old_version(self, backend: AsyncBackend) -> None:
        """After a restart that lost the versions, new versions differ from every old one."""
        seen: set[str] = set()
        for cycle in range(5):
            seen.update(await _store(backend, "k", cycle, ["t"]))
            await backend.invalidate_tags(["t"])
        seen.update(await _store(backend, "k", "old", ["t"]))

        restarted = await self.restart(backend)
        try:
            assert MISSING is await restarted.get("k", ["t"])
            assert MISSING is await restarted.get("k")
            new = await _store(restarted, "k", "new", ["t"])
            assert set() == seen & set(new)
            assert "new" == await restarted.get("k", ["t"])
        finally:
            await restarted.aclose()

    async def test_stale_fill_is_rejected(self, backend: AsyncBackend) -> None:
        """A fill whose versions were read before an invalidation is refused and stores nothing."""
        ticket = await backend.begin_fill("k", ["t"], token="loader", lease_ttl=30.0)
        await backend.invalidate_tags(["t"])

        assert not await backend.fill("k", "stale", ["t"], ticket.versions, ttl=60, token="loader")
        assert MISSING is await backend.get("k", ["t"])
        assert MISSING is await backend.get("k")
        # The rejected fill still let go of its lease.
        assert FillStatus.ACQUIRED is await _begin(backend, "k", ["t"], token="next")

    async def test_fill_is_rejected_when_any_tag_moved(self, backend: AsyncBackend) -> None:
        """One moved tag among several is enough to refuse the fill."""
        tags = ["a", "b", "c"]
        ticket = await backend.begin_fill("k", tags, token="loader", lease_ttl=None)
        await backend.invalidate_tags(["c"])

        assert not await backend.fill("k", "v", tags, ticket.versions, ttl=60, token=None)
        assert MISSING is await backend.get("k")

    async def test_tag_versions_absent_current_and_pending(self, backend: AsyncBackend) -> None:
        """tag_versions answers None for an absent tag, the version, and PENDING_VERSION while held."""
        versions = await _store(backend, "k", "v", ["known", "held"])
        await backend.mark_pending(["held"], token="writer", ttl=30)

        answer = await backend.tag_versions(["absent", "known", "held"])

        assert {"absent": None, "known": versions[0], "held": PENDING_VERSION} == answer
        assert {} == await backend.tag_versions([])

    # Pending marks of write transactions

    async def test_pending_tag_refuses_fills(self, backend: AsyncBackend) -> None:
        """While a writer holds a tag, begin_fill answers PENDING, fills fail, entries miss."""
        versions = await _store(backend, "k", "v", ["t"])
        await backend.mark_pending(["t"], token="writer", ttl=30)

        assert FillStatus.PENDING is await _begin(backend, "other", ["t", "free"])
        assert not await backend.fill("k", "new", ["t"], versions, ttl=60, token=None)
        assert MISSING is await backend.get("k", ["t"])
        assert MISSING is await backend.get("k")
        # PENDING took no lease: once the writer is done, a loader acquires at once.
        await backend.clear_pending(["t"], token="writer", committed=True)
        assert FillStatus.ACQUIRED is await _begin(backend, "other", ["t", "free"], token="next")

    async def test_commit_gives_a_new_version(self, backend: AsyncBackend) -> None:
        """A committed writer leaves the tag fillable under a version different from before."""
        old = await _store(backend, "k", "old", ["t"])
        await backend.mark_pending(["t"], token="writer", ttl=30)
        await backend.clear_pending(["t"], token="writer", committed=True)

        assert MISSING is await backend.get("k", ["t"])
        new = await _store(backend, "k", "new", ["t"])
        assert old != new
        assert "new" == await backend.get("k", ["t"])

    async def test_pending_until_the_last_writer_clears(self, backend: AsyncBackend) -> None:
        """With two writers on one tag, the first commit leaves it pending until the second clears."""
        old = await _store(backend, "k", "old", ["t"])
        await backend.mark_pending(["t"], token="writer-a", ttl=30)
        await backend.mark_pending(["t"], token="writer-b", ttl=30)

        await backend.clear_pending(["t"], token="writer-a", committed=True)
        assert {"t": PENDING_VERSION} == await backend.tag_versions(["t"])
        assert FillStatus.PENDING is await _begin(backend, "k", ["t"])

        await backend.clear_pending(["t"], token="writer-b", committed=True)
        new = await _store(backend, "k", "new", ["t"])
        assert old != new

    async def test_rollback_of_the_only_writer_restores(self, backend: AsyncBackend) -> None:
        """A rolled-back writer that held the tag alone gives it back its old version."""
        versions = await _store(backend, "k", "v", ["t"])
        await backend.mark_pending(["t"], token="writer", ttl=30)
        assert MISSING is await backend.get("k", ["t"])

        await backend.clear_pending(["t"], token="writer", committed=False)

        assert {"t": versions[0]} == await backend.tag_versions(["t"])
        assert "v" == await backend.get("k", ["t"])
        assert "v" == await backend.get("k")

    async def test_no_restore_after_another_writer_committed(self, backend: AsyncBackend) -> None:
        """When one writer committed, the last one rolling back does not bring the old version back."""
        await _store(backend, "k", "old", ["t"])
        await backend.mark_pending(["t"], token="writer-a", ttl=30)
        await backend.mark_pending(["t"], token="writer-b", ttl=30)

        await backend.clear_pending(["t"], token="writer-a", committed=True)
        await backend.clear_pending(["t"], token="writer-b", committed=False)

        assert MISSING is await backend.get("k", ["t"])
        assert MISSING is await backend.get("k")
        assert FillStatus.ACQUIRED is await _begin(backend, "k", ["t"])

    async def test_invalidate_while_pending_stays_pending(self, backend: AsyncBackend) -> None:
        """An invalidation during a hold keeps the tag pending, and a rollback then restores nothing."""
        await _store(backend, "k", "old", ["t"])
        await backend.mark_pending(["t"], token="writer", ttl=30)

        await backend.invalidate_tags(["t"])
        assert {"t": PENDING_VERSION} == await backend.tag_versions(["t"])
        assert FillStatus.PENDING is await _begin(backend, "k", ["t"])

        await backend.clear_pending(["t"], token="writer", committed=False)
        assert MISSING is await backend.get("k", ["t"])
        assert MISSING is await backend.get("k")

    async def test_expired_pending_mark_stops_blocking(self, backend: AsyncBackend) -> None:
        """A dead writer's mark expires: the tag is fillable again and the old entry is not served."""
        old = await _store(backend, "k", "old", ["t"])
        await backend.mark_pending(["t"], token="dead-writer", ttl=SHORT_TTL)
        assert FillStatus.PENDING is await _begin(backend, "k", ["t"])

        await async_sleep(PAST_SHORT_TTL)

        assert MISSING is await backend.get("k", ["t"])
        assert MISSING is await backend.get("k")
        assert PENDING_VERSION != (await backend.tag_versions(["t"]))["t"]
        new = await _store(backend, "k", "new", ["t"])
        assert old != new
        assert "new" == await backend.get("k", ["t"])

    async def test_dead_writer_expires_after_another_commits(self, backend: AsyncBackend) -> None:
        """When one writer commits, the other's mark still expires at its own ttl, not later."""
        await backend.mark_pending(["t"], token="writer", ttl=30)
        await backend.mark_pending(["t"], token="dead-writer", ttl=SHORT_TTL)
        await backend.clear_pending(["t"], token="writer", committed=True)
        assert FillStatus.PENDING is await _begin(backend, "k", ["t"])

        await async_sleep(PAST_SHORT_TTL)

        assert PENDING_VERSION != (await backend.tag_versions(["t"]))["t"]
        assert FillStatus.ACQUIRED is await _begin(backend, "k", ["t"])

    async def test_no_restore_after_a_writer_died(self, backend: AsyncBackend) -> None:
        """A rollback restores nothing when another writer died holding the tag: it may have committed."""
        await _store(backend, "k", "old", ["t"])
        await backend.mark_pending(["t"], token="writer", ttl=30)
        await backend.mark_pending(["t"], token="dead-writer", ttl=SHORT_TTL)

        await async_sleep(PAST_SHORT_TTL)
        await backend.clear_pending(["t"], token="writer", committed=False)

        assert MISSING is await backend.get("k", ["t"])
        assert MISSING is await backend.get("k")

    async def test_clear_pending_without_a_mark(self, backend: AsyncBackend) -> None:
        """Clearing a tag the token never held: a commit still moves the version, a rollback does not."""
        await _store(backend, "kept", "v", ["rolled-back"])
        await _store(backend, "gone", "v", ["committed"])

        await backend.clear_pending(["rolled-back"], token="writer", committed=False)
        await backend.clear_pending(["committed"], token="writer", committed=True)

        assert {"kept": "v"} == await backend.get_many(["kept", "gone"])

    # Leases of loaders

    async def test_lease_goes_to_the_first_token(self, backend: AsyncBackend) -> None:
        """The first token to begin a fill with a lease acquires it; another token is BUSY."""
        assert FillStatus.ACQUIRED is await _begin(backend, "k", ["t"], token="first")
        assert FillStatus.BUSY is await _begin(backend, "k", ["t"], token="second")
        assert FillStatus.ACQUIRED is await _begin(backend, "other", ["t"], token="second")

    async def test_holder_reacquires_its_own_lease(self, backend: AsyncBackend) -> None:
        """The token that holds a lease can begin the same fill again."""
        assert FillStatus.ACQUIRED is await _begin(backend, "k", ["t"], token="first")
        assert FillStatus.ACQUIRED is await _begin(backend, "k", ["t"], token="first")

    async def test_lease_expires_after_its_ttl(self, backend: AsyncBackend) -> None:
        """A dead loader's lease expires and another token takes over."""
        ticket = await backend.begin_fill("k", ["t"], token="dead", lease_ttl=SHORT_TTL)
        assert FillStatus.ACQUIRED is ticket.status
        assert FillStatus.BUSY is await _begin(backend, "k", ["t"], token="second")

        await async_sleep(PAST_SHORT_TTL)

        assert FillStatus.ACQUIRED is await _begin(backend, "k", ["t"], token="second")
        assert FillStatus.BUSY is await _begin(backend, "k", ["t"], token="dead")

    async def test_fill_with_the_token_releases_the_lease(self, backend: AsyncBackend) -> None:
        """A fill by the lease holder stores the value and lets go of the lease."""
        ticket = await backend.begin_fill("k", ["t"], token="first", lease_ttl=30)

        assert await backend.fill("k", "v", ["t"], ticket.versions, ttl=60, token="first")
        assert "v" == await backend.get("k", ["t"])
        await backend.invalidate_tags(["t"])  # so that the next begin is not answered by the entry
        assert FillStatus.ACQUIRED is await _begin(backend, "k", ["t"], token="second")

    async def test_begin_fill_answers_a_valid_entry_instead_of_a_lease(
        self, backend: AsyncBackend
    ) -> None:
        """A fill begun after another one landed gets that entry's value (HIT), not a lease for a second load."""
        ticket = await backend.begin_fill("k", ["t"], token="first", lease_ttl=30)
        await backend.fill("k", {"loaded": 1}, ["t"], ticket.versions, ttl=60, token="first")

        late = await backend.begin_fill("k", ["t"], token="late", lease_ttl=30)

        assert (FillStatus.HIT, {"loaded": 1}) == (late.status, late.value)
        without_lease = await backend.begin_fill("k", ["t"], token="set", lease_ttl=None)
        assert FillStatus.ACQUIRED is without_lease.status  # set() overwrites; it asks no lease
        await backend.invalidate_tags(["t"])
        assert FillStatus.ACQUIRED is await _begin(backend, "k", ["t"], token="late")

    async def test_release_lease_only_by_its_holder(self, backend: AsyncBackend) -> None:
        """release_lease by another token does nothing; by the holder it frees the key."""
        assert FillStatus.ACQUIRED is await _begin(backend, "k", ["t"], token="holder")

        await backend.release_lease("k", "intruder")
        assert FillStatus.BUSY is await _begin(backend, "k", ["t"], token="intruder")

        await backend.release_lease("k", "holder")
        assert FillStatus.ACQUIRED is await _begin(backend, "k", ["t"], token="intruder")
        await backend.release_lease("never-leased", "anyone")

    async def test_fill_by_a_non_holder_keeps_the_lease(self, backend: AsyncBackend) -> None:
        """A fill with a token that does not hold the lease is refused; one with no token (a set) stores; the holder keeps its lease."""
        ticket = await backend.begin_fill("k", ["t"], token="holder", lease_ttl=30)

        assert not await backend.fill("k", "v", ["t"], ticket.versions, ttl=60, token="other")
        assert MISSING is await backend.get("k", ["t"])
        assert await backend.fill("k", "v", ["t"], ticket.versions, ttl=60, token=None)
        await backend.invalidate_tags(["t"])  # else the stored entry answers before the lease
        assert FillStatus.BUSY is await _begin(backend, "k", ["t"], token="other")

    async def test_deleting_a_key_fences_the_fill_in_flight(self, backend: AsyncBackend) -> None:
        """A load begun before its key was deleted cannot store what it read: the delete took its lease."""
        ticket = await backend.begin_fill("k", ["t"], token="loader", lease_ttl=30)
        await backend.delete(["k"])  # a writer invalidates the key while the loader reads

        assert not await backend.fill("k", "old", ["t"], ticket.versions, ttl=60, token="loader")
        assert MISSING is await backend.get("k", ["t"])

    async def test_deleting_by_pattern_fences_the_fills_in_flight(
        self, backend: AsyncBackend
    ) -> None:
        """A pattern delete takes the leases of the keys it matches, so their loads cannot store."""
        ticket = await backend.begin_fill("user:1", ["t"], token="loader", lease_ttl=30)
        other = await backend.begin_fill("post:1", ["t"], token="loader", lease_ttl=30)
        await backend.delete_pattern("user:*")

        assert not await backend.fill(
            "user:1", "old", ["t"], ticket.versions, ttl=60, token="loader"
        )
        assert await backend.fill("post:1", "kept", ["t"], other.versions, ttl=60, token="loader")

    async def test_begin_fill_without_a_lease_ignores_leases(self, backend: AsyncBackend) -> None:
        """A fill begun without lease_ttl (a plain set) is not blocked by a loader's lease."""
        assert FillStatus.ACQUIRED is await _begin(backend, "k", ["t"], token="loader")

        ticket = await backend.begin_fill("k", ["t"], token="setter", lease_ttl=None)

        assert FillStatus.ACQUIRED is ticket.status
        assert FillStatus.BUSY is await _begin(backend, "k", ["t"], token="other")

    # Pattern deletes

    async def test_delete_pattern_star(self, backend: AsyncBackend) -> None:
        """delete_pattern with * deletes the matching keys only and counts them."""
        keys = ["user:1", "user:2", "user:10:challenges", "challenge:1", "users"]
        for key in keys:
            await _store(backend, key, key)

        assert 3 == await backend.delete_pattern("user:*")

        found = await backend.get_many(keys)
        assert {"challenge:1": "challenge:1", "users": "users"} == found
        assert 0 == await backend.delete_pattern("user:*")

    async def test_delete_pattern_question_mark(self, backend: AsyncBackend) -> None:
        """delete_pattern with ? matches exactly one character."""
        keys = ["user:1", "user:2", "user:10", "user:"]
        for key in keys:
            await _store(backend, key, key)

        assert 2 == await backend.delete_pattern("user:?")

        assert {"user:10": "user:10", "user:": "user:"} == await backend.get_many(keys)

    # Values

    async def test_json_shaped_values_round_trip(self, backend: AsyncBackend) -> None:
        """Every JSON shape comes back equal, with its type."""
        values: list[Any] = [
            0,
            -(2**53),
            1.5,
            "",
            "text",
            True,
            False,
            None,
            [],
            {},
            [1, "two", 3.0, None, [True]],
            {"nested": {"list": [{"a": 1}], "null": None}, "n": 2},
        ]
        for index, value in enumerate(values):
            await _store(backend, f"value:{index}", value, ["t"])

        for index, value in enumerate(values):
            got = await backend.get(f"value:{index}", ["t"])
            assert value == got
            assert type(value) is type(got)

    async def test_every_kind_of_value_round_trips_with_its_types(
        self, backend: AsyncBackend
    ) -> None:
        """Each kind of value in EVERY_KIND comes back equal and of the same types, however it is read."""
        for name, value in EVERY_KIND.items():
            await _store(backend, f"kind:{name}", value, ["t"])
        await _store(backend, "kind:all", EVERY_KIND, ["t"])

        for name, value in [*EVERY_KIND.items(), ("all", EVERY_KIND)]:
            hinted = await backend.get(f"kind:{name}", ["t"])
            by_script = await backend.get(f"kind:{name}")
            (many,) = (await backend.get_many([f"kind:{name}"])).values()
            ticket = await backend.begin_fill(f"kind:{name}", ["t"], token="late", lease_ttl=30.0)
            assert FillStatus.HIT is ticket.status
            for got in (hinted, by_script, many, ticket.value):
                assert value == got, name
                assert type_shape(value) == type_shape(got), name

    async def test_a_stored_value_is_a_copy(self, backend: AsyncBackend) -> None:
        """Changing the object that was filled does not change what the backend holds."""
        value: dict[str, Any] = {"roles": ["author"], "seen": {1, 2}}
        await _store(backend, "user:1", value, ["t"])
        value["roles"].append("admin")
        value["seen"].add(3)

        assert {"roles": ["author"], "seen": {1, 2}} == await backend.get("user:1", ["t"])

    async def test_a_value_it_cannot_carry_is_refused_before_it_is_stored(
        self, backend: AsyncBackend
    ) -> None:
        """A fill of a value the backend cannot carry raises SerializationError, stores nothing and frees the lease."""
        ticket = await backend.begin_fill("k", ["t"], token="loader", lease_ttl=30.0)
        assert FillStatus.ACQUIRED is ticket.status

        with pytest.raises(SerializationError, match="'k'"):
            # No serializer carries a function: not JSON, not msgpack, not even pickle.
            await backend.fill(
                "k", {"a": [1, lambda: None]}, ["t"], ticket.versions, ttl=60.0, token="loader"
            )

        assert MISSING is await backend.get("k", ["t"])
        assert FillStatus.ACQUIRED is await _begin(backend, "k", ["t"], token="next")

    async def test_unicode_values_round_trip(self, backend: AsyncBackend) -> None:
        """Non-ASCII text, emoji and joined emoji come back unchanged, in values and dict keys."""
        value = {
            "name": "Zoë Ørsted-Łukasiewicz",
            "city": "東京",
            "greeting": "Привет, мир",
            "mood": "🎉👩‍👩‍👧‍👦🏳️‍🌈",
            "ключ": ["ü", "\u00a0", "\u200b", "\U0001d11e"],
        }
        await _store(backend, "user:1", value, ["user:1"])

        assert value == await backend.get("user:1", ["user:1"])
        assert value == await backend.get("user:1")

    async def test_large_values_round_trip(self, backend: AsyncBackend) -> None:
        """A value of a few megabytes is stored and read back whole."""
        value = {
            "blob": "x" * 3_000_000,
            "rows": [{"id": i, "name": f"user {i}"} for i in range(20_000)],
        }
        await _store(backend, "big", value, ["t"])

        assert value == await backend.get("big", ["t"])
        assert value == await backend.get("big")

    # Keys and tags, validated by the cache in front of the backend

    @pytest.mark.parametrize(
        ("key", "message"),
        [
            (" user:1", "key ' user:1' has ' ' at position 0"),
            ("user 1", "key 'user 1' has ' ' at position 4"),
            ("user:\t1", "has '\\t' at position 5"),
            ("user:*", "key 'user:*' has '*' at position 5"),
            ("user:{id}", "has '{' at position 5"),
            ("clé", "key 'clé' has 'é' at position 2"),
            ("", "key must not be empty"),
            ("k" * 513, "key is 513 characters long; the limit is 512"),
            (42, "key must be a str, not int"),
        ],
    )
    async def test_invalid_keys_are_refused(
        self,
        backend: AsyncBackend,
        key: Any,
        message: str,
    ) -> None:
        """set and delete refuse a bad key with InvalidKeyError naming the problem."""
        cache = AsyncCache(backend)

        with pytest.raises(InvalidKeyError, match=re.escape(message)):
            await cache.set(key, "v")
        with pytest.raises(InvalidKeyError, match=re.escape(message)):
            await cache.delete(key)

    @pytest.mark.parametrize(
        ("tags", "message"),
        [
            (["user 1"], "tag 'user 1' has ' ' at position 4"),
            (["user:?"], "tag 'user:?' has '?' at position 5"),
            ([""], "tag must not be empty"),
            (["t" * 257], "tag is 257 characters long; the limit is 256"),
            ([None], "tag must be a str, not NoneType"),
            ("user:1", "tags must be a list of strings, not the string 'user:1'"),
        ],
    )
    async def test_invalid_tags_are_refused(
        self,
        backend: AsyncBackend,
        tags: Any,
        message: str,
    ) -> None:
        """set and invalidate_tags refuse a bad tag with InvalidKeyError, and store nothing."""
        cache = AsyncCache(backend)

        with pytest.raises(InvalidKeyError, match=re.escape(message)):
            await cache.set("k", "v", tags=tags)
        with pytest.raises(InvalidKeyError, match=re.escape(message)):
            await cache.invalidate_tags(tags)
        assert MISSING is await backend.get("k")

    async def test_pattern_of_everything_needs_confirmation(self, backend: AsyncBackend) -> None:
        """invalidate_pattern('*') is refused unless confirmed, then deletes every entry."""
        cache = AsyncCache(backend)
        await _store(backend, "k", "v")

        with pytest.raises(InvalidKeyError, match=re.escape("pass confirm_all=True")):
            await cache.invalidate_pattern("*")
        assert "v" == await backend.get("k")
        assert 1 == await cache.invalidate_pattern("*", confirm_all=True)
        assert MISSING is await backend.get("k")

    # Housekeeping

    async def test_clear_removes_everything(self, backend: AsyncBackend) -> None:
        """clear drops entries, tag versions, pending marks and leases."""
        await _store(backend, "user:1", 1, ["user:1"])
        await _store(backend, "plain", 2)
        await backend.mark_pending(["held"], token="writer", ttl=30)
        assert FillStatus.ACQUIRED is await _begin(backend, "leased", ["t"], token="holder")

        await backend.clear()

        assert {} == await backend.get_many(["user:1", "plain"])
        versions = await backend.tag_versions(["user:1", "held", "t"])
        assert {"user:1": None, "held": None, "t": None} == versions
        assert FillStatus.ACQUIRED is await _begin(backend, "leased", ["t", "held"], token="other")

    # Inspection

    async def test_describe_key_of_a_fresh_entry_says_it_would_hit(
        self, backend: AsyncBackend
    ) -> None:
        """A fresh entry is described with its tags at the versions stored, its TTL and size."""
        versions = await _store(backend, "user:1", {"name": "Ada"}, ["user:1", "users"])

        state = await backend.describe_key("user:1")

        assert state.found
        assert state.would_hit
        assert [] == state.reasons
        assert dict(zip(["user:1", "users"], versions, strict=True)) == state.stored_versions
        assert ["user:1", "users"] == [tag.tag for tag in state.tags]
        assert list(versions) == [tag.version for tag in state.tags]
        assert state.ttl_seconds is not None
        assert 0 < state.ttl_seconds <= 60.0
        assert state.size_bytes is not None
        assert state.size_bytes > 0

    async def test_describe_key_agrees_with_get(self, backend: AsyncBackend) -> None:
        """would_hit is what a read answers: fresh, stale after an invalidation, held, absent."""
        await _store(backend, "fresh", 1, ["a"])
        await _store(backend, "stale", 2, ["b"])
        await _store(backend, "held", 3, ["c"])
        await backend.invalidate_tags(["b"])
        await backend.mark_pending(["c"], token="writer", ttl=30)

        for key in ("fresh", "stale", "held", "absent"):
            state = await backend.describe_key(key)
            assert (await backend.get(key) is not MISSING) == state.would_hit, key

    async def test_describe_key_explains_a_stale_entry(self, backend: AsyncBackend) -> None:
        """After its tag moves, the entry is found but explained as a miss naming the tag."""
        versions = await _store(backend, "user:1", 1, ["user:1"])
        await backend.invalidate_tags(["user:1"])
        await _begin(backend, "other", ["user:1"])  # a read that gives the tag a new version

        state = await backend.describe_key("user:1")

        assert state.found
        assert not state.would_hit
        assert versions[0] == state.stored_versions["user:1"]
        assert versions[0] != state.tags[0].version
        assert 1 == len(state.reasons)
        assert "'user:1'" in state.reasons[0]

    async def test_describe_key_and_tag_show_pending_holders(self, backend: AsyncBackend) -> None:
        """A tag held by a writer is shown pending, with the writer's token and time left."""
        await _store(backend, "user:1", 1, ["user:1"])
        await backend.mark_pending(["user:1"], token="writer-7", ttl=30)

        key_state = await backend.describe_key("user:1")
        tag_state = await backend.describe_tag("user:1")

        assert not key_state.would_hit
        assert "writer-7" in key_state.reasons[0]
        for state in (key_state.tags[0], tag_state):
            assert PENDING_VERSION == state.version
            assert state.pending
            assert ["writer-7"] == list(state.holders)
            assert 0 < state.holders["writer-7"] <= 30
        await backend.clear_pending(["user:1"], token="writer-7", committed=True)
        assert not (await backend.describe_tag("user:1")).pending

    async def test_describe_absent_key_shows_its_lease(self, backend: AsyncBackend) -> None:
        """An absent key is not found; a loader's lease on it is shown with its token."""
        assert FillStatus.ACQUIRED is await _begin(backend, "loading", ["t"], token="loader-1")

        state = await backend.describe_key("loading")
        nothing = await backend.describe_key("nothing")

        assert not state.found
        assert not state.would_hit
        assert "loader-1" == state.lease_holder
        assert state.lease_ttl_seconds is not None
        assert 0 < state.lease_ttl_seconds <= 30
        assert (None, None) == (nothing.lease_holder, nothing.lease_ttl_seconds)

    async def test_describe_tag_of_an_unknown_tag(self, backend: AsyncBackend) -> None:
        """A tag never read has no version and no holders."""
        state = await backend.describe_tag("never")

        assert (None, {}, False) == (state.version, state.holders, state.pending)

    async def test_describing_changes_nothing(self, backend: AsyncBackend) -> None:
        """Describing a key or tag leaves versions and a held mark exactly as they were."""
        await _store(backend, "user:1", 1, ["user:1", "held"])
        await backend.mark_pending(["held"], token="writer", ttl=30)
        before = await backend.tag_versions(["user:1", "held"])

        await backend.describe_key("user:1")
        await backend.describe_tag("held")

        assert before == await backend.tag_versions(["user:1", "held"])
        assert FillStatus.PENDING is await _begin(backend, "user:1", ["held"])
