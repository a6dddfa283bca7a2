"""The Redis Streams transport: the conformance suite on the real server, and what only Redis has."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio

from freshcache import (
    AsyncEventBus,
    AsyncEventTransport,
    BackendError,
    ConfigurationError,
    Event,
    EventTypes,
)
from freshcache._async.events.transports.redis_streams import AsyncRedisStreamsTransport
from freshcache._synchronization import async_sleep
from freshcache.testing import (
    AsyncEventTransportSuite,
    AsyncReceived,
    async_wait_for_dead_letters,
)

from ..redis_server import RedisServer

WAIT = 10.0
# Short, so that the suite's redeliveries happen in a fraction of a second.
REDELIVER_AFTER = 0.1


def transport(url: str, namespace: str, **options: object) -> AsyncRedisStreamsTransport:
    options.setdefault("service", "tests")
    options.setdefault("redeliver_after", REDELIVER_AFTER)
    return AsyncRedisStreamsTransport.from_url(url, namespace=namespace, **options)  # type: ignore[arg-type]


class TestRedisStreamsTransport(AsyncEventTransportSuite):
    @pytest.fixture(autouse=True)
    def _server(self, redis_url: str, namespace: str) -> None:
        self.redis_url = redis_url
        self.namespace = namespace

    async def make_transport(self, *, max_deliveries: int = 3) -> AsyncEventTransport:
        return transport(self.redis_url, self.namespace, max_deliveries=max_deliveries)


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def wait_until_acknowledged(
    client: redis.asyncio.Redis, stream: str, group: str, count: int
) -> None:
    """Until the group has read ``count`` entries and has none pending (polled: it is server state)."""
    deadline = time.monotonic() + WAIT
    while True:
        [info] = [g for g in await client.xinfo_groups(stream) if g["name"] == group.encode()]
        if info["pending"] == 0 and info["entries-read"] == count:
            return
        assert time.monotonic() < deadline, f"not acknowledged in {WAIT} s: {info}"
        await async_sleep(0.01)


async def started(transport: AsyncRedisStreamsTransport) -> AsyncEventBus:
    bus = AsyncEventBus(transport)
    await bus.start()
    return bus


async def test_malformed_messages_are_dead_lettered_with_their_reason(
    redis_url: str, namespace: str, client: redis.asyncio.Redis
) -> None:
    """Messages that are not JSON, lack fields, name an unknown type or have no event go to the dead letters, and the events after them arrive."""
    bus = await started(transport(redis_url, namespace))
    try:
        received = bus.subscribe(EventTypes.USER_CREATED, AsyncReceived())
        stream = f"{{{namespace}}}:events"
        good = Event(EventTypes.USER_CREATED, {"id": 1}, source="writer")
        for fields in [
            {"event": b"{not json"},
            {"event": b'{"type": "user.created", "data": {}}'},
            {
                "event": Event(EventTypes.USER_CREATED)
                .to_json()
                .replace("user.created", "user.renamed")
            },
            {"event": b"[1, 2]"},
            {"other": b"x"},
        ]:
            await client.xadd(stream, fields)  # type: ignore[arg-type]
        await bus.publish(good)

        assert [good] == await received.wait()
        letters = await async_wait_for_dead_letters(bus.transport, 5)
        reasons = [letter.reason for letter in letters]
        assert reasons[0].startswith("malformed event: not JSON: ")
        assert "malformed event: missing fields: id, occurred_at, source" == reasons[1]
        assert (
            "malformed event: unknown event type 'user.renamed': register it with EventTypes.register('user.renamed')"
            == reasons[2]
        )
        assert "malformed event: not a JSON object but list" == reasons[3]
        assert "malformed event: no 'event' field in the message" == reasons[4]
        assert [1, 1, 1, 1, 1] == [letter.deliveries for letter in letters]
        assert "{not json" == letters[0].payload
        assert [None] * 5 == [letter.event for letter in letters]
        await wait_until_acknowledged(client, stream, "tests", 6)
    finally:
        await bus.aclose()


async def test_dead_consumers_messages_are_reclaimed(
    redis_url: str, namespace: str, client: redis.asyncio.Redis
) -> None:
    """A message read by a consumer that never acknowledges is taken over by a live one and delivered again."""
    live = transport(redis_url, namespace, consumer="live")
    bus = AsyncEventBus(live)
    received = bus.subscribe(EventTypes.USER_UPDATED, AsyncReceived())
    stream = f"{{{namespace}}}:events"
    await client.xgroup_create(stream, "tests", id="$", mkstream=True)
    event = Event(EventTypes.USER_UPDATED, {"id": 1}, source="writer")
    await client.xadd(stream, {"event": event.to_json()})
    await client.xreadgroup("tests", "dead", {stream: ">"})  # read, then the consumer "dies"
    try:
        await bus.start()

        assert [event] == await received.wait()
        assert 1 == bus.metrics.redeliveries
        await wait_until_acknowledged(client, stream, "tests", 1)
        consumers = {c["name"]: c["pending"] for c in await client.xinfo_consumers(stream, "tests")}
        assert {b"dead": 0, b"live": 0} == consumers
    finally:
        await bus.aclose()


async def test_consumer_that_keeps_dying_is_dead_lettered(
    redis_url: str, namespace: str, client: redis.asyncio.Redis
) -> None:
    """A message delivered max_deliveries times without an acknowledgement is dead-lettered, not delivered again."""
    bus = AsyncEventBus(transport(redis_url, namespace, consumer="live", max_deliveries=2))
    received = bus.subscribe(EventTypes.USER_UPDATED, AsyncReceived())
    stream = f"{{{namespace}}}:events"
    await client.xgroup_create(stream, "tests", id="$", mkstream=True)
    poison = Event(EventTypes.USER_UPDATED, {"id": 1}, source="writer")
    await client.xadd(stream, {"event": poison.to_json()})
    await client.xreadgroup("tests", "dead-1", {stream: ">"})  # two consumers took it and died
    await client.xclaim(stream, "tests", "dead-2", 0, [(await client.xrange(stream))[0][0]])
    try:
        await bus.start()

        [letter] = await async_wait_for_dead_letters(bus.transport, 1)
        assert poison == letter.event
        assert "not acknowledged after 2 deliveries" in letter.reason
        assert [] == received.events
    finally:
        await bus.aclose()


async def test_every_service_gets_each_event_and_its_processes_share_them(
    redis_url: str, namespace: str
) -> None:
    """Each service (consumer group) receives every event once; the consumers of one service split them."""
    billing = [
        await started(transport(redis_url, namespace, service="billing", consumer=f"b{n}"))
        for n in range(2)
    ]
    search = await started(transport(redis_url, namespace, service="search"))
    publisher = AsyncEventBus(transport(redis_url, namespace, service="writer"))
    try:
        billing_seen = AsyncReceived(expected=20)
        for bus in billing:
            bus.subscribe(EventTypes.USER_CREATED, billing_seen)
        search_seen = search.subscribe(EventTypes.USER_CREATED, AsyncReceived(expected=20))

        await publisher.publish_many([Event(EventTypes.USER_CREATED, {"id": n}) for n in range(20)])

        assert list(range(20)) == [e.data["id"] for e in await search_seen.wait()]
        assert list(range(20)) == sorted(e.data["id"] for e in await billing_seen.wait())
        assert 20 == sum(bus.metrics.delivered for bus in billing)
    finally:
        for bus in [*billing, search, publisher]:
            await bus.aclose()


async def test_stream_length_is_bounded(
    redis_url: str, namespace: str, client: redis.asyncio.Redis
) -> None:
    """Publishing trims the stream to about max_len entries (whole nodes, so never below it)."""
    publisher = AsyncEventBus(transport(redis_url, namespace, max_len=100))
    try:
        for start in range(0, 2000, 100):
            await publisher.publish_many(
                [Event(EventTypes.USER_CREATED, {"id": n}) for n in range(start, start + 100)]
            )

        length = await client.xlen(f"{{{namespace}}}:events")
        assert 100 <= length < 400
    finally:
        await publisher.aclose()


async def test_lost_group_is_created_again(
    redis_url: str, namespace: str, client: redis.asyncio.Redis
) -> None:
    """When the stream and its group vanish (a server restarted empty), the consumer recreates them and goes on."""
    bus = await started(transport(redis_url, namespace))
    try:
        first = bus.subscribe(EventTypes.USER_CREATED, AsyncReceived())
        await bus.publish(Event(EventTypes.USER_CREATED, {"id": 1}))
        await first.wait()
        await client.delete(f"{{{namespace}}}:events")
        bus.unsubscribe(EventTypes.USER_CREATED, first)
        second = bus.subscribe(EventTypes.USER_CREATED, AsyncReceived())

        await bus.publish(Event(EventTypes.USER_CREATED, {"id": 2}))

        assert [2] == [event.data["id"] for event in await second.wait()]
    finally:
        await bus.aclose()


async def test_backlog_counts_unread_and_unacknowledged(
    redis_url: str, namespace: str, client: redis.asyncio.Redis
) -> None:
    """backlog() reports the events the service has not read (lag) and those read but not acknowledged (pending)."""
    consumer = transport(redis_url, namespace)
    bus = AsyncEventBus(consumer)
    stream = f"{{{namespace}}}:events"
    await client.xgroup_create(stream, "tests", id="$", mkstream=True)
    publisher = AsyncEventBus(transport(redis_url, namespace, service="writer"))
    try:
        await publisher.publish_many([Event(EventTypes.USER_CREATED, {"id": n}) for n in range(5)])
        await client.xreadgroup("tests", "slow", {stream: ">"}, count=2)

        assert {"lag": 3, "pending": 2} == await consumer.backlog()
    finally:
        await bus.aclose()
        await publisher.aclose()


@pytest.mark.slow
async def test_consumer_survives_a_restart_without_losing_its_position(
    private_redis: RedisServer, namespace: str
) -> None:
    """After Redis is killed and restarted, the consumer reconnects: nothing acknowledged comes back, and new events arrive."""
    bus = await started(transport(private_redis.url, namespace))
    publisher = AsyncEventBus(transport(private_redis.url, namespace, service="writer"))
    client = redis.asyncio.Redis.from_url(private_redis.url)
    try:
        seen = bus.subscribe(EventTypes.USER_CREATED, AsyncReceived(expected=2))
        await publisher.publish(Event(EventTypes.USER_CREATED, {"id": 1}))
        await wait_until_acknowledged(client, f"{{{namespace}}}:events", "tests", 1)
        private_redis.stop()
        private_redis.start()

        await publisher.publish(Event(EventTypes.USER_CREATED, {"id": 2}))

        assert [1, 2] == [event.data["id"] for event in await seen.wait()]
        assert 0 == bus.metrics.redeliveries
    finally:
        await bus.aclose()
        await publisher.aclose()
        await client.aclose()


async def test_publish_to_a_dead_server_raises_backend_error(
    private_redis: RedisServer, namespace: str
) -> None:
    """Publishing while Redis is down raises freshcache's BackendError, not redis-py's error."""
    publisher = AsyncEventBus(transport(private_redis.url, namespace))
    try:
        private_redis.stop()

        with pytest.raises(BackendError, match="ConnectionError"):
            await publisher.publish(Event(EventTypes.USER_CREATED, {"id": 1}))
        assert 0 == publisher.metrics.published
    finally:
        await publisher.aclose()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"service": "has space"}, "service: "),
        ({"namespace": "a{b}"}, "namespace: "),
        ({"max_deliveries": 0}, "max_deliveries must be at least 1, not 0"),
        ({"redeliver_after": 0}, r"redeliver_after must be a positive number of seconds, .*not 0"),
        ({"block": float("nan")}, r"block must be a positive number of seconds, .*not nan"),
        ({"max_len": 0}, "max_len must be at least 1, not 0"),
        ({"consumer": "a b"}, "consumer must be a printable name without spaces"),
    ],
)
def test_options_are_checked(redis_url: str, options: dict[str, object], message: str) -> None:
    """A bad option is a configuration error that names it, before any connection."""
    options.setdefault("service", "tests")
    with pytest.raises(ConfigurationError, match=message):
        AsyncRedisStreamsTransport(redis.asyncio.Redis.from_url(redis_url), **options)  # type: ignore[arg-type]
