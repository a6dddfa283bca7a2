"""The invalidation manager, on the memory backend and on the real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime

import pytest

from freshcache import (
    AsyncCache,
    AsyncInvalidationManager,
    BackendError,
    ConfigurationError,
    EntityChange,
    Invalidation,
    InvalidKeyError,
)

from ..rules import service_rules


@pytest.fixture
async def cache(cache_url: str) -> AsyncIterator[AsyncCache]:
    cache = AsyncCache.from_url(cache_url)
    await cache.clear()
    yield cache
    await cache.aclose()


@pytest.fixture
async def manager(cache: AsyncCache) -> AsyncIterator[AsyncInvalidationManager]:
    manager = AsyncInvalidationManager(cache, service_rules())
    yield manager
    await manager.aclose()


def count_backend_calls(cache: AsyncCache) -> list[Sequence[str]]:
    """Record every invalidate_tags call that reaches the (real) backend."""
    calls: list[Sequence[str]] = []
    original = cache.backend.invalidate_tags

    async def recording(tags: Sequence[str]) -> None:
        calls.append(tags)
        await original(tags)

    cache.backend.invalidate_tags = recording  # type: ignore[method-assign]
    return calls


async def test_evaluation_invalidates_across_domains(
    cache: AsyncCache, manager: AsyncInvalidationManager
) -> None:
    """An evaluation of challenge 7 by user 2 drops that challenge's evaluations, user 2's progress and the leaderboard, and nothing of user 3."""
    entries = {
        "challenge:7:evaluations": ["challenge:7:evaluations"],
        "user:2:progress": ["user:2:evaluations"],
        "leaderboard": ["leaderboard"],
        "challenge:7": ["challenge:7"],
        "user:3:progress": ["user:3:evaluations"],
        "user:3:challenges": ["user:3:challenges"],
        "user:3": ["user:3"],
        "challenge:8:evaluations": ["challenge:8:evaluations"],
    }
    for key, tags in entries.items():
        await cache.set(key, key, tags=tags)

    await manager.invalidate_entity(
        "evaluation", new={"id": 1, "challenge_id": 7, "user_id": 2, "score": 9}
    )

    survivors = await cache.get_many(list(entries))
    assert {"user:3:progress", "user:3:challenges", "user:3", "challenge:8:evaluations"} == set(
        survivors
    )


async def test_moved_challenge_invalidates_both_users(
    cache: AsyncCache, manager: AsyncInvalidationManager
) -> None:
    """Moving a challenge from user 1 to user 2 drops both users' challenge lists."""
    await cache.set("user:1:challenges", [7], tags=["user:1:challenges"])
    await cache.set("user:2:challenges", [], tags=["user:2:challenges"])

    invalidation = await manager.invalidate_entity(
        "challenge", old={"id": 7, "user_id": 1}, new={"id": 7, "user_id": 2}
    )

    assert ("challenge:7", "user:1:challenges", "user:2:challenges") == invalidation.tags
    assert {} == await cache.get_many(["user:1:challenges", "user:2:challenges"])


async def test_a_transaction_costs_one_backend_operation(
    cache: AsyncCache, manager: AsyncInvalidationManager
) -> None:
    """All tags of a batch of changes go to the backend in a single call."""
    calls = count_backend_calls(cache)

    async with manager.batch(source="transaction") as batch:
        for n in range(10):
            batch.entity("evaluation", new={"id": n, "challenge_id": n, "user_id": n})
        batch.tags(["extra"])

    assert 1 == len(calls)
    assert 32 == len(calls[0])  # 10 x (2 lists + the parent challenge) + leaderboard + extra
    assert batch.result is not None
    assert {"evaluation": 10} == manager.metrics.invalidations_by_entity_type


async def test_a_failed_batch_applies_nothing(
    cache: AsyncCache, manager: AsyncInvalidationManager
) -> None:
    """When the work inside a batch raises, no invalidation is applied or counted."""
    calls = count_backend_calls(cache)

    async def work() -> None:
        async with manager.batch() as batch:
            batch.entity("user", new={"id": 1})
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError, match="rolled back"):
        await work()

    assert [] == calls
    assert {} == manager.metrics.invalidations_by_entity_type


async def test_bad_input_is_refused_before_anything_is_applied(
    cache: AsyncCache, manager: AsyncInvalidationManager
) -> None:
    """An unknown entity type, or a change whose tags cannot be formatted, applies nothing."""
    calls = count_backend_calls(cache)

    with pytest.raises(ConfigurationError, match="no rules for entity type 'invoice'"):
        await manager.invalidate_entity("invoice", new={"id": 1})
    with pytest.raises(InvalidKeyError, match="needs user_id"):
        await manager.invalidate_entity("challenge", new={"id": 1})
    with pytest.raises(InvalidKeyError, match="needs user_id"):  # one bad change spoils the batch
        await manager.invalidate_entities(
            [EntityChange("user", new={"id": 1}), EntityChange("challenge", new={"id": 1})]
        )

    assert [] == calls
    assert 0 == manager.metrics.entity_invalidations


async def test_metrics_and_last_invalidation(manager: AsyncInvalidationManager) -> None:
    """Counts by entity type, keys, patterns and tags, and the last invalidation's details."""
    await manager.invalidate_entity("user", new={"id": 1, "name": "a"})
    await manager.invalidate_entity("user", old={"id": 2})
    await manager.invalidate_entity("challenge", new={"id": 3, "user_id": 1}, source="api")
    await manager.invalidate_keys(["user:1", "user:2"])
    await manager.invalidate_pattern("user:*")

    snapshot = manager.snapshot()
    assert {"challenge": 1, "user": 2} == snapshot["invalidations_by_entity_type"]
    assert 2 == snapshot["key_invalidations"]
    assert 1 == snapshot["pattern_invalidations"]
    assert (
        6 == snapshot["tag_invalidations"]
    )  # user:1 leaderboard user:2 leaderboard challenge:3 user:1:challenges
    assert 0 == snapshot["failed_invalidations"]
    assert 5 == snapshot["invalidate_latency"]["count"]
    last = snapshot["last_invalidation"]
    assert (["user:*"], "application", True) == (last["patterns"], last["source"], last["applied"])
    assert datetime.fromisoformat(last["at"]).tzinfo is not None

    manager.metrics.reset()
    assert {} == manager.snapshot()["invalidations_by_entity_type"]
    assert None is manager.snapshot()["last_invalidation"]


async def test_entity_helper(cache: AsyncCache, manager: AsyncInvalidationManager) -> None:
    """manager.entity("challenge")(id=7, user_id=2) invalidates what those values name."""
    await cache.set("k", 1, tags=["user:2:challenges"])
    invalidate_challenge = manager.entity("challenge")

    invalidation = await invalidate_challenge(id=7, user_id=2)

    assert ("challenge:7", "user:2:challenges") == invalidation.tags
    assert None is await cache.get("k")
    with pytest.raises(ConfigurationError, match="known types: challenge, evaluation, user"):
        manager.entity("invoice")


async def test_subscribers_are_told_and_isolated(manager: AsyncInvalidationManager) -> None:
    """Every subscriber hears each invalidation; a failing one is counted and does not stop the others."""
    heard: list[Invalidation] = []
    also: list[tuple[str, ...]] = []

    def broken(invalidation: Invalidation) -> None:
        raise ValueError("subscriber bug")

    async def listener(invalidation: Invalidation) -> None:
        also.append(invalidation.tags)

    unsubscribe = manager.subscribe(heard.append)
    manager.subscribe(broken)
    manager.subscribe(listener)

    await manager.invalidate_entity("user", old={"id": 1})
    unsubscribe()
    await manager.invalidate_tags(["x"])

    assert [("user:1", "leaderboard")] == [invalidation.tags for invalidation in heard]
    assert [("user:1", "leaderboard"), ("x",)] == also
    assert 2 == manager.metrics.notification_errors


async def test_two_phases_commit(cache: AsyncCache, manager: AsyncInvalidationManager) -> None:
    """Between begin and commit readers bypass the cache; after commit the old entry is gone."""
    await cache.set("user:1", "old", tags=["user:1"])
    pending = await manager.begin(["user:1"])

    assert "db" == await cache.get_or_load("user:1", lambda: "db", tags=["user:1"])
    assert None is await cache.get("user:1")

    await manager.commit(pending, changes=[EntityChange("user", new={"id": 1})])
    assert {"user": 1} == manager.metrics.invalidations_by_entity_type

    assert "new" == await cache.get_or_load("user:1", lambda: "new", tags=["user:1"])
    assert "new" == await cache.get("user:1")


async def test_two_phases_abort_keeps_the_cache_warm(
    cache: AsyncCache, manager: AsyncInvalidationManager
) -> None:
    """A rollback lets go of the tags and the entry from before is a hit again."""
    await cache.set("user:1", "unchanged", tags=["user:1"])
    pending = await manager.begin(["user:1"])
    assert None is await cache.get("user:1")

    await manager.abort(pending)

    assert "unchanged" == await cache.get("user:1")


async def test_unreachable_backend_never_fails_the_write() -> None:
    """With no server, invalidate_entity counts the failure, queues it without retrying against the breaker it opened, and returns."""
    cache = AsyncCache.from_url("redis://127.0.0.1:1/0", connect_timeout=0.1, retries=0)
    manager = AsyncInvalidationManager(cache, service_rules(), retries=2, backoff=0.01)
    try:
        invalidation = await manager.invalidate_entity("user", new={"id": 1})

        assert not invalidation.applied
        snapshot = manager.snapshot()
        assert (1, 0, 2) == (
            snapshot["failed_invalidations"],
            snapshot["retried_invalidations"],
            snapshot["queued_invalidations"],
        )
        assert not snapshot["last_invalidation"]["applied"]
    finally:
        await manager.aclose()
        await cache.aclose()


async def test_raise_on_failure_raises_and_still_queues() -> None:
    """raise_on_failure=True surfaces the BackendError, after queueing the invalidation."""
    cache = AsyncCache.from_url("redis://127.0.0.1:1/0", connect_timeout=0.1, retries=0)
    manager = AsyncInvalidationManager(cache, service_rules(), retries=0, raise_on_failure=True)
    try:
        with pytest.raises(BackendError):
            await manager.invalidate_tags(["user:1"])
        assert 1 == len(manager.failure_sink)
    finally:
        await manager.aclose()
        await cache.aclose()
