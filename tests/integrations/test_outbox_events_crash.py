"""Domain events through the outbox across real processes: nothing lost to a crash, nothing doubled in effect.

A child process updates a user through a repository whose hooks publish to Redis Streams;
``SessionInvalidation.on_committed`` (after the database commit, before the invalidation
and the publishing) tells the parent over a pipe, and the parent SIGKILLs it there. The
event was committed in the outbox row with the data, and never published: the relay
publishes it. A relay killed after publishing but before deleting its claim leaves the
row to the next relay, which publishes the event again with the same id; the invalidation
handlers recognise it, and an entry filled in between survives (checked in the cache).
"""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.connection
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from freshcache import Cache, Event, EventBus, InvalidationManager, invalidation_handlers
from freshcache._sync.events.transports.redis_streams import RedisStreamsTransport
from freshcache.integrations.sqlalchemy import (
    BaseRepository,
    OutboxRelay,
    SessionInvalidation,
    outbox_table,
    rules_from_models,
)

from ..redis_server import RedisServer
from .conftest import Database
from .models import MODELS, Base, User
from .support import count_rows

SPAWN = multiprocessing.get_context("spawn")
OUTBOX = outbox_table(Base.metadata)
WAIT = 30.0
# The relays run only when a test calls them: a background pass could repair the crash
# before the test has looked at what it left.
NO_BACKGROUND_RELAY = 3600.0


class Users(BaseRepository[User]):
    model = User


@dataclass
class Service:
    """One process of the application: database, cache, manager, a bus on Redis Streams, relay, hooks."""

    engine: Engine
    cache: Cache
    manager: InvalidationManager
    bus: EventBus
    relay: OutboxRelay
    hooks: SessionInvalidation
    users: Users
    deliveries: Any = None

    @classmethod
    def build(
        cls,
        database: Database,
        redis_url: str,
        namespace: str,
        name: str,
        bus_class: Any = EventBus,
        bus_url: str | None = None,
    ) -> Service:
        engine = database.engine()
        cache = Cache.from_url(f"{redis_url}?namespace={namespace}")
        manager = InvalidationManager(cache, rules_from_models(MODELS))
        bus = bus_class(
            RedisStreamsTransport.from_url(
                bus_url or redis_url,
                service="web",
                namespace=namespace,
                consumer=name,
                start_at="0",
            ),
            source=name,
        )
        relay = OutboxRelay(engine, manager, OUTBOX, grace=0, interval=NO_BACKGROUND_RELAY, bus=bus)
        sessions = sessionmaker(engine, expire_on_commit=False)
        hooks = SessionInvalidation(manager, mode="commit", outbox=OUTBOX, relay=relay, bus=bus)
        hooks.install(sessions)
        return cls(engine, cache, manager, bus, relay, hooks, Users(sessions, cache))

    def close(self) -> None:
        self.relay.close()
        self.bus.close()
        self.manager.close()
        self.cache.close()
        self.engine.dispose()


def _update_and_die_after_commit(
    database: Database, redis_url: str, namespace: str, user_id: int, parent: Any
) -> None:
    """A child: updates the user; after the commit it says "committed" and waits to be killed."""
    service = Service.build(database, redis_url, namespace, "writer")

    def stop_here(session: Session) -> None:
        parent.send("committed")
        parent.recv()  # never answered: the parent kills this process here

    service.hooks.on_committed = stop_here
    service.users.update(user_id, name="after")


class _StopAfterPublishing(EventBus):
    """A real bus that, once its events are on the stream, says so and waits to be killed."""

    parent: Any = None

    def publish_many(self, events: Sequence[Event]) -> None:
        super().publish_many(events)
        type(self).parent.send("published")
        type(self).parent.recv()


def _relay_and_die_after_publishing(
    database: Database, redis_url: str, namespace: str, parent: Any
) -> None:
    """A child: a relay that publishes the row left behind and is killed before deleting it."""
    _StopAfterPublishing.parent = parent
    service = Service.build(database, redis_url, namespace, "relay", _StopAfterPublishing)
    service.relay.run_once()


def _run_until_killed(target: Any, *args: Any, said: str) -> None:
    """Run ``target`` in a child; SIGKILL it when it says ``said`` over the pipe."""
    ours, theirs = SPAWN.Pipe()
    child = SPAWN.Process(target=target, args=(*args, theirs), daemon=True)
    child.start()
    try:
        assert ours.poll(WAIT), f"the child never said {said!r} (exit code {child.exitcode})"
        assert said == ours.recv()
    finally:
        child.kill()
        child.join(10)
    assert -signal.SIGKILL == child.exitcode


class Deliveries:
    """The events this process is given, ahead of its other handlers; ``hold`` stops them there."""

    def __init__(self, bus: EventBus) -> None:
        self.events: list[Event] = []
        self.hold = False
        self.go = threading.Event()
        self._arrived = threading.Condition()
        bus.subscribe("user.updated", self.record)

    def record(self, event: Event) -> None:
        with self._arrived:
            self.events.append(event)
            self._arrived.notify_all()
        if self.hold:
            assert self.go.wait(WAIT)

    def wait_for(self, count: int) -> list[Event]:
        with self._arrived:
            assert self._arrived.wait_for(lambda: len(self.events) >= count, WAIT)
            return list(self.events)


@pytest.fixture
def service(postgres: Database, redis_url: str, namespace: str) -> Iterator[Service]:
    engine = postgres.engine()
    Base.metadata.create_all(engine)
    engine.dispose()
    built = Service.build(postgres, redis_url, namespace, "reader")
    built.deliveries = Deliveries(built.bus)  # subscribed first: it sees events before they act
    invalidation_handlers(built.bus, built.manager, {"user.updated": "user"})
    built.bus.start()
    yield built
    built.deliveries.go.set()
    built.close()


def _cached_user(service: Service) -> int:
    """A user named "before", read once so that the cache holds it."""
    user = service.users.add(email="ada@example.com", name="before", score=1)
    assert 1 == service.relay.delete_applied()  # its own row, applied and published
    assert "before" == service.users.get(user.id).name  # type: ignore[union-attr]
    return user.id


def _read_name(service: Service, user_id: int) -> str:
    user = service.users.get(user_id)
    assert user is not None
    return user.name


def _stream_length(redis_url: str, service: Service) -> int:
    client = redis.Redis.from_url(redis_url)
    try:
        return int(client.xlen(service.bus.transport.stream))  # type: ignore[attr-defined]
    finally:
        client.close()


def _wait_until_handled(redis_url: str, service: Service) -> None:
    """Until the group has nothing pending: every delivery handled and acknowledged (server state, polled)."""
    client = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + WAIT
    try:
        while client.xpending(service.bus.transport.stream, "web")["pending"]:  # type: ignore[attr-defined]
            assert time.monotonic() < deadline, "the redelivery was never acknowledged"
    finally:
        client.close()


@pytest.mark.slow
def test_an_event_committed_by_a_writer_killed_before_publishing_is_published_by_the_relay(
    service: Service, postgres: Database, redis_url: str, namespace: str
) -> None:
    """A writer SIGKILLed between its commit and its publishing publishes nothing; the relay then publishes its event, which invalidates."""
    deliveries = service.deliveries
    user_id = _cached_user(service)
    on_stream = _stream_length(redis_url, service)  # the user.created event

    _run_until_killed(
        _update_and_die_after_commit, postgres, redis_url, namespace, user_id, said="committed"
    )

    assert on_stream == _stream_length(redis_url, service)  # the event was never published
    assert 1 == count_rows(service.engine, OUTBOX)
    assert "before" == _read_name(service, user_id)  # and the cache was never told

    assert 1 == service.relay.run_once()

    [event] = deliveries.wait_for(1)
    assert ("user.updated", "writer") == (event.type, event.source)
    assert ["name"] == event.data["changed"]
    assert ("before", "after") == (event.data["old"]["name"], event.data["new"]["name"])
    assert 0 == count_rows(service.engine, OUTBOX)
    assert "after" == _read_name(service, user_id)


@pytest.mark.slow
def test_a_relay_killed_after_publishing_is_harmless_when_the_next_one_publishes_again(
    service: Service, postgres: Database, redis_url: str, namespace: str
) -> None:
    """A relay killed after publishing leaves its row to the next relay, which publishes the same event again; its second delivery does not drop what was cached since."""
    deliveries = service.deliveries
    user_id = _cached_user(service)
    _run_until_killed(
        _update_and_die_after_commit, postgres, redis_url, namespace, user_id, said="committed"
    )

    _run_until_killed(
        _relay_and_die_after_publishing, postgres, redis_url, namespace, said="published"
    )
    [first] = deliveries.wait_for(1)
    assert 1 == count_rows(service.engine, OUTBOX)  # the killed relay deleted nothing
    assert "after" == _read_name(service, user_id)  # filled again after the invalidation

    # The killed relay's claim is released when the server sees its connection close.
    deliveries.hold = True
    deadline = time.monotonic() + WAIT
    while service.relay.run_once() == 0:
        assert time.monotonic() < deadline, "the killed relay's claim was never released"
    assert 0 == count_rows(service.engine, OUTBOX)

    # The relay invalidated the row's tags again (harmless: colder); the entry is filled
    # anew while the second delivery waits ahead of the invalidation handler.
    [_, second] = deliveries.wait_for(2)
    assert (first.id, first.data) == (second.id, second.data)
    assert "after" == _read_name(service, user_id)
    deliveries.go.set()
    _wait_until_handled(redis_url, service)
    hits = service.cache.metrics.hits
    assert "after" == _read_name(service, user_id)
    assert hits + 1 == service.cache.metrics.hits  # the redelivery left the fresh entry alone


def test_an_event_the_bus_refused_after_the_commit_is_published_by_the_relay_once_it_is_back(
    postgres: Database, redis_url: str, namespace: str, private_redis: RedisServer
) -> None:
    """With the event stream's Redis down, the write still commits and returns; its row stays, and the relay publishes the event when Redis is back."""
    engine = postgres.engine()
    Base.metadata.create_all(engine)
    engine.dispose()
    service = Service.build(postgres, redis_url, namespace, "writer", bus_url=private_redis.url)
    try:
        user = service.users.add(email="ada@example.com", name="before", score=1)
        assert 1 == service.relay.delete_applied()
        private_redis.stop()

        assert "after" == service.users.update(user.id, name="after").name  # type: ignore[union-attr]

        assert 1 == count_rows(service.engine, OUTBOX)
        assert 1 == service.bus.metrics.published  # the creation's event only
        private_redis.start()
        assert 1 == service.relay.run_once()
        with redis.Redis.from_url(private_redis.url) as client:
            stream = client.xrange(service.bus.transport.stream)  # type: ignore[attr-defined]
        types = [json.loads(fields[b"event"])["type"] for _, fields in stream]
        assert ["user.created", "user.updated"] == types
        assert 0 == count_rows(service.engine, OUTBOX)
    finally:
        service.close()
