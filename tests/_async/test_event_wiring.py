"""Invalidation handlers: domain events alone keep reads fresh, through Redis Streams, idempotently."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from freshcache import (
    AsyncCache,
    AsyncEventBus,
    AsyncInvalidationManager,
    ConfigurationError,
    EntityChange,
    Event,
    EventTypes,
    InvalidEventError,
    invalidation_handlers,
)
from freshcache._async.events.transports.redis_streams import AsyncRedisStreamsTransport
from freshcache._synchronization import async_sleep
from freshcache.testing import AsyncReceived

from ..redis_server import RedisServer
from ..rules import service_rules

MAPPING = {
    EventTypes.USER_CREATED: "user",
    EventTypes.USER_UPDATED: "user",
    EventTypes.USER_DELETED: "user",
    EventTypes.CHALLENGE_CREATED: "challenge",
    EventTypes.CHALLENGE_UPDATED: "challenge",
    EventTypes.CHALLENGE_DELETED: "challenge",
    EventTypes.EVALUATION_COMPLETED: "evaluation",
}


@dataclass
class Database:
    """The reference domain's rows, written without telling the cache: only events do."""

    users: dict[int, dict[str, Any]] = field(default_factory=dict)
    challenges: dict[int, dict[str, Any]] = field(default_factory=dict)
    evaluations: dict[int, dict[str, Any]] = field(default_factory=dict)

    def user(self, user_id: int) -> dict[str, Any]:
        return dict(self.users[user_id])

    def challenges_of(self, user_id: int) -> list[int]:
        return sorted(c["id"] for c in self.challenges.values() if c["user_id"] == user_id)

    def evaluations_of_challenge(self, challenge_id: int) -> list[int]:
        return sorted(
            e["id"] for e in self.evaluations.values() if e["challenge_id"] == challenge_id
        )

    def progress(self, user_id: int) -> int:
        return sum(e["score"] for e in self.evaluations.values() if e["user_id"] == user_id)

    def leaderboard(self) -> list[tuple[str, int]]:
        return sorted((u["name"], u["score"]) for u in self.users.values())


# key: (tags, how to load it from the database)
READS: dict[str, tuple[list[str], Any]] = {
    "user:1": (["user:1"], lambda db: db.user(1)),
    "user:2": (["user:2"], lambda db: db.user(2)),
    "user:1:challenges": (["user:1:challenges"], lambda db: db.challenges_of(1)),
    "user:2:challenges": (["user:2:challenges"], lambda db: db.challenges_of(2)),
    "user:3:challenges": (["user:3:challenges"], lambda db: db.challenges_of(3)),
    "challenge:7:evaluations": (
        ["challenge:7:evaluations"],
        lambda db: db.evaluations_of_challenge(7),
    ),
    "user:2:progress": (["user:2:evaluations"], lambda db: db.progress(2)),
    "user:3:progress": (["user:3:evaluations"], lambda db: db.progress(3)),
    "leaderboard": (["leaderboard"], lambda db: db.leaderboard()),
}


class Service:
    """A cache read through, and a bus whose only invalidations are the event handlers'."""

    def __init__(self, cache: AsyncCache, bus: AsyncEventBus, db: Database) -> None:
        self.cache = cache
        self.bus = bus
        self.db = db

    async def read(self, key: str) -> Any:
        tags, load = READS[key]
        return await self.cache.get_or_load(key, lambda: load(self.db), tags=tags)

    async def read_all(self) -> dict[str, Any]:
        return {key: await self.read(key) for key in READS}

    async def cached(self) -> set[str]:
        """The keys whose entries are still valid."""
        return {
            key
            for key, (tags, _) in READS.items()
            if await self.cache.get(key, tags=tags) is not None
        }

    async def publish_and_wait(self, event: Event) -> None:
        """Publish, and wait until this service's handlers (the invalidation first) have run on it."""
        done = AsyncReceived()
        self.bus.subscribe(event.type, done)
        try:
            await self.bus.publish(event)
            await done.wait()
        finally:
            self.bus.unsubscribe(event.type, done)


@pytest.fixture
async def service(redis_url: str, namespace: str) -> AsyncIterator[Service]:
    cache = AsyncCache.from_url(f"{redis_url}?namespace={namespace}")
    manager = AsyncInvalidationManager(cache, service_rules())
    transport = AsyncRedisStreamsTransport.from_url(
        redis_url, service="web", namespace=namespace, redeliver_after=0.1
    )
    bus = AsyncEventBus(transport)
    invalidation_handlers(bus, manager, MAPPING)
    db = Database(
        users={n: {"id": n, "name": f"user{n}", "score": 0, "email": f"{n}@x"} for n in (1, 2, 3)},
        challenges={
            5: {"id": 5, "user_id": 1, "title": "five"},
            7: {"id": 7, "user_id": 3, "title": "seven"},
        },
    )
    await bus.start()
    try:
        yield Service(cache, bus, db)
    finally:
        await bus.aclose()
        await manager.aclose()
        await cache.aclose()


async def test_user_events_keep_user_reads_fresh(service: Service) -> None:
    """A renamed user's entry and the leaderboard are refreshed by the event alone; an email change leaves the leaderboard cached."""
    await service.read_all()
    old = service.db.user(1)
    service.db.users[1]["name"] = "ada"

    await service.publish_and_wait(
        Event(EventTypes.USER_UPDATED, {"new": service.db.user(1), "old": old, "changed": ["name"]})
    )

    assert {"name": "ada"}.items() <= (await service.read("user:1")).items()
    assert service.db.leaderboard() == await service.read("leaderboard")
    old = service.db.user(2)
    service.db.users[2]["email"] = "new@x"
    await service.publish_and_wait(
        Event(
            EventTypes.USER_UPDATED, {"new": service.db.user(2), "old": old, "changed": ["email"]}
        )
    )
    assert "leaderboard" in await service.cached()
    assert "user:2" not in await service.cached()
    assert "new@x" == (await service.read("user:2"))["email"]


async def test_moved_challenge_drops_both_users_lists(service: Service) -> None:
    """A challenge moved from user 1 to user 2 refreshes both users' challenge lists, and not user 3's."""
    await service.read_all()
    old = dict(service.db.challenges[5])
    service.db.challenges[5]["user_id"] = 2

    await service.publish_and_wait(
        Event(
            EventTypes.CHALLENGE_UPDATED,
            {"new": dict(service.db.challenges[5]), "old": old, "changed": ["user_id"]},
        )
    )

    assert [] == await service.read("user:1:challenges")
    assert [5] == await service.read("user:2:challenges")
    assert {"user:3:challenges", "user:3:progress", "leaderboard"} <= await service.cached()


async def test_evaluation_drops_its_challenge_user_and_leaderboard_only(service: Service) -> None:
    """An evaluation drops its challenge's evaluations, its user's progress and the leaderboard, and nothing of another user."""
    await service.read_all()
    evaluation = {"id": 1, "challenge_id": 7, "user_id": 2, "score": 9}
    service.db.evaluations[1] = evaluation
    service.db.users[2]["score"] = 9

    await service.publish_and_wait(Event(EventTypes.EVALUATION_COMPLETED, evaluation))

    assert {
        "user:1",
        "user:2",
        "user:1:challenges",
        "user:2:challenges",
        "user:3:challenges",
        "user:3:progress",
    } == await service.cached()
    assert [1] == await service.read("challenge:7:evaluations")
    assert 9 == await service.read("user:2:progress")
    assert service.db.leaderboard() == await service.read("leaderboard")


async def test_redelivered_event_does_no_harm(service: Service) -> None:
    """An event delivered again after its invalidation was applied leaves entries filled since then alone; another event does not."""
    await service.read_all()
    event = Event(EventTypes.USER_DELETED, {"id": 3, "name": "user3", "score": 0})
    del service.db.users[3]
    await service.publish_and_wait(event)
    assert service.db.leaderboard() == await service.read("leaderboard")  # refilled

    await service.publish_and_wait(event)  # the same event, as a redelivery brings it

    assert "leaderboard" in await service.cached()
    await service.publish_and_wait(
        Event(EventTypes.USER_DELETED, {"id": 3, "name": "user3", "score": 0})
    )
    assert "leaderboard" not in await service.cached()


async def test_invalidation_that_cannot_be_applied_is_delivered_again(
    private_redis: RedisServer, redis_url: str, namespace: str
) -> None:
    """While the cache's Redis is down the handler fails, and the event is delivered until the invalidation lands."""
    cache = AsyncCache.from_url(f"{private_redis.url}?namespace={namespace}")
    manager = AsyncInvalidationManager(cache, service_rules(), retries=0)
    bus = AsyncEventBus(
        AsyncRedisStreamsTransport.from_url(
            redis_url, service="web", namespace=namespace, redeliver_after=0.1, max_deliveries=1000
        )
    )
    invalidation_handlers(bus, manager, MAPPING)
    attempts = bus.subscribe(EventTypes.USER_UPDATED, AsyncReceived(expected=1))
    await bus.start()
    try:
        await cache.set("user:1", "old", tags=["user:1"])
        private_redis.stop()

        await bus.publish(Event(EventTypes.USER_UPDATED, {"id": 1}))
        await attempts.wait()
        private_redis.start()
        deadline = time.monotonic() + 10
        while bus.metrics.handler_calls < 2:  # the invalidation handler's and ours, at last
            assert time.monotonic() < deadline, bus.snapshot()
            await async_sleep(0.02)

        assert 1 <= bus.metrics.handler_failures[EventTypes.USER_UPDATED]
        assert 1 <= bus.metrics.redeliveries
        assert None is await cache.get("user:1", tags=["user:1"])
    finally:
        await bus.aclose()
        await manager.aclose()
        await cache.aclose()


def test_mapping_is_checked_before_anything_is_subscribed() -> None:
    """An unknown event type, an entity type without rules, or a bad target is refused, and nothing is subscribed."""
    cache = AsyncCache.from_url("memory://")
    manager = AsyncInvalidationManager(cache, service_rules())
    bus = AsyncEventBus()

    with pytest.raises(InvalidEventError, match=r"unknown event type 'user\.renamed'"):
        invalidation_handlers(
            bus, manager, {EventTypes.USER_UPDATED: "user", "user.renamed": "user"}
        )
    with pytest.raises(ConfigurationError, match="invoice"):
        invalidation_handlers(bus, manager, {EventTypes.USER_UPDATED: "invoice"})
    with pytest.raises(ConfigurationError, match="give an entity type or a function"):
        invalidation_handlers(bus, manager, {EventTypes.USER_UPDATED: 42})  # type: ignore[dict-item]
    assert () == bus.handlers(EventTypes.USER_UPDATED)


async def test_custom_mapping_function_and_unsubscribe() -> None:
    """A mapping function turns an event into changes; the returned function unsubscribes the handlers."""
    cache = AsyncCache.from_url("memory://")
    manager = AsyncInvalidationManager(cache, service_rules())
    bus = AsyncEventBus()
    unsubscribe = invalidation_handlers(
        bus,
        manager,
        {
            EventTypes.EVALUATION_COMPLETED: lambda e: [
                EntityChange("user", old={"id": e.data["user"]})
            ]
        },
    )
    await cache.set("user:4", "cached", tags=["user:4"])

    await bus.publish(Event(EventTypes.EVALUATION_COMPLETED, {"user": 4}))

    assert None is await cache.get("user:4", tags=["user:4"])
    unsubscribe()
    assert () == bus.handlers(EventTypes.EVALUATION_COMPLETED)


async def test_malformed_change_data_is_dead_lettered_with_its_reason() -> None:
    """An event whose data cannot be a change (new is not an object, a tag field is missing) ends as a dead letter saying why."""
    cache = AsyncCache.from_url("memory://")
    manager = AsyncInvalidationManager(cache, service_rules())
    bus = AsyncEventBus()
    invalidation_handlers(bus, manager, MAPPING)

    await bus.publish(Event(EventTypes.USER_UPDATED, {"new": [1, 2]}))
    await bus.publish(Event(EventTypes.CHALLENGE_CREATED, {"id": 1}))

    first, second = await bus.transport.dead_letters()
    assert "data['new'] must be an object" in first.reason
    assert "user_id" in second.reason
