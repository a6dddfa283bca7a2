"""The event transport conformance suite: every transport, built in or a user's, passes it.

Subclass :class:`AsyncEventTransportSuite` in a test module under a name pytest collects
and implement one method::

    class TestMyTransport(AsyncEventTransportSuite):
        async def make_transport(self, *, max_deliveries: int) -> AsyncEventTransport:
            return MyTransport(..., max_deliveries=max_deliveries)

The transport must be on a store of the test's own, and redeliver an unacknowledged
event within a second (the suite waits up to ``WAIT`` seconds for anything to happen).
Each test builds a bus on it, starts it, and closes it after.
"""

from __future__ import annotations

import abc
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from freshcache import DeadLetter, Event, EventTypes, InvalidEventError, _synchronization
from freshcache._async.events.bus import AsyncEventBus
from freshcache._async.events.transports.base import AsyncEventTransport

WAIT = 10.0


class AsyncReceived:
    """A handler that keeps what it is given and says when ``expected`` calls have arrived."""

    def __init__(self, expected: int = 1, fail: Callable[[Event, int], bool] | None = None) -> None:
        self.events: list[Event] = []
        self.expected = expected
        self.fail = fail
        self._done = _synchronization.AsyncEvent()

    def __call__(self, event: Event) -> None:
        self.events.append(event)
        if len(self.events) >= self.expected:
            self._done.set()
        if self.fail is not None and self.fail(event, len(self.events)):
            raise ValueError(f"refused {event.type} (call {len(self.events)})")

    async def wait(self) -> list[Event]:
        arrived = await self._done.wait(WAIT)
        assert arrived, f"{len(self.events)} of {self.expected} calls arrived in {WAIT} s"
        return self.events


async def async_wait_for_dead_letters(
    transport: AsyncEventTransport, count: int
) -> list[DeadLetter]:
    """The transport's dead letters once there are ``count`` of them (polled: it is server state)."""
    deadline = time.monotonic() + WAIT
    while True:
        letters = await transport.dead_letters()
        if len(letters) >= count or time.monotonic() > deadline:
            assert count == len(letters), f"{len(letters)} dead letters, expected {count}"
            return letters
        await _synchronization.async_sleep(0.02)


class AsyncEventTransportSuite(abc.ABC):
    """The behaviour every :class:`AsyncEventTransport` owes the event bus."""

    @abc.abstractmethod
    async def make_transport(self, *, max_deliveries: int = 3) -> AsyncEventTransport:
        """A new transport on a store of this test's own; it redelivers within a second."""

    @pytest.fixture
    async def bus(self) -> AsyncIterator[AsyncEventBus]:
        """A started bus on a fresh transport, closed after the test."""
        bus = AsyncEventBus(await self.make_transport(), source="suite")
        await bus.start()
        try:
            yield bus
        finally:
            await bus.aclose()

    async def test_event_arrives_whole(self, bus: AsyncEventBus) -> None:
        """A handler receives an event equal to the one published: type, data, id, time and source."""
        received = bus.subscribe(EventTypes.USER_UPDATED, AsyncReceived())
        event = Event(
            EventTypes.USER_UPDATED,
            {
                "new": {"id": 1, "name": "ünï 🎉", "score": 2.5},
                "old": {"id": 1},
                "changed": ["name"],
            },
            source="writer-1",
        )

        await bus.publish(event)

        assert [event] == await received.wait()

    async def test_bus_names_itself_as_source(self, bus: AsyncEventBus) -> None:
        """An event published without a source carries the bus's."""
        received = bus.subscribe(EventTypes.USER_CREATED, AsyncReceived())

        await bus.publish(Event(EventTypes.USER_CREATED, {"id": 1}))

        assert ["suite"] == [event.source for event in await received.wait()]

    async def test_events_arrive_in_publish_order(self, bus: AsyncEventBus) -> None:
        """Events published one by one and in batches reach a handler in the order published."""
        received = bus.subscribe(EventTypes.USER_UPDATED, AsyncReceived(expected=60))
        events = [Event(EventTypes.USER_UPDATED, {"id": 1, "n": n}) for n in range(60)]

        for event in events[:20]:
            await bus.publish(event)
        await bus.publish_many(events[20:40])
        await bus.publish_many(events[40:])

        assert [e.data["n"] for e in events] == [e.data["n"] for e in await received.wait()]

    async def test_handler_sees_only_its_type(self, bus: AsyncEventBus) -> None:
        """A handler is called for the type it subscribed to, not for others."""
        updated = bus.subscribe(EventTypes.USER_UPDATED, AsyncReceived())

        await bus.publish(Event(EventTypes.USER_CREATED, {"id": 1}))
        await bus.publish(Event(EventTypes.USER_UPDATED, {"id": 2}))

        assert [2] == [event.data["id"] for event in await updated.wait()]

    async def test_handlers_of_one_type_all_run_in_order(self, bus: AsyncEventBus) -> None:
        """Every handler of a type runs, in the order they subscribed; a decorator subscribes too."""
        calls: list[str] = []
        last = AsyncReceived()

        @bus.subscribe(EventTypes.CHALLENGE_CREATED)
        def first(event: Event) -> None:
            calls.append("first")

        @bus.subscribe(EventTypes.CHALLENGE_CREATED)
        async def second(event: Event) -> None:
            calls.append("second")

        bus.subscribe(EventTypes.CHALLENGE_CREATED, last)

        await bus.publish(Event(EventTypes.CHALLENGE_CREATED, {"id": 3}))

        await last.wait()
        assert ["first", "second"] == calls

    async def test_unsubscribed_handler_is_not_called(self, bus: AsyncEventBus) -> None:
        """After unsubscribe a handler gets nothing; the others still do."""
        gone = AsyncReceived()
        kept = AsyncReceived()
        bus.subscribe(EventTypes.USER_DELETED, gone)
        bus.subscribe(EventTypes.USER_DELETED, kept)

        assert bus.unsubscribe(EventTypes.USER_DELETED, gone)
        assert not bus.unsubscribe(EventTypes.USER_DELETED, gone)
        await bus.publish(Event(EventTypes.USER_DELETED, {"id": 1}))

        await kept.wait()
        assert [] == gone.events

    async def test_failing_handler_does_not_stop_the_others(self, bus: AsyncEventBus) -> None:
        """A handler that raises is counted; the others run, and the publisher sees no error."""
        bus.subscribe(EventTypes.USER_UPDATED, AsyncReceived(fail=lambda event, call: call == 1))
        other = bus.subscribe(EventTypes.USER_UPDATED, AsyncReceived())

        await bus.publish(Event(EventTypes.USER_UPDATED, {"id": 1}))

        await other.wait()
        assert 1 <= bus.metrics.handler_failures[EventTypes.USER_UPDATED]

    async def test_failed_event_is_delivered_again(self, bus: AsyncEventBus) -> None:
        """An event whose handler failed is delivered again, and not dead-lettered once it succeeds."""
        flaky = bus.subscribe(
            EventTypes.USER_UPDATED, AsyncReceived(expected=2, fail=lambda event, call: call == 1)
        )
        event = Event(EventTypes.USER_UPDATED, {"id": 1}, source="writer")

        await bus.publish(event)

        assert [event, event] == await flaky.wait()
        assert 1 <= bus.metrics.redeliveries
        later = bus.subscribe(EventTypes.USER_CREATED, AsyncReceived())
        await bus.publish(Event(EventTypes.USER_CREATED, {"id": 2}))
        await later.wait()
        assert [] == await bus.transport.dead_letters()

    async def test_event_failing_every_delivery_is_dead_lettered(self, bus: AsyncEventBus) -> None:
        """After max_deliveries failed deliveries the event is dead-lettered with the handler's error."""
        failing = bus.subscribe(
            EventTypes.EVALUATION_COMPLETED,
            AsyncReceived(expected=bus.transport.max_deliveries, fail=lambda event, call: True),
        )
        event = Event(EventTypes.EVALUATION_COMPLETED, {"id": 9}, source="writer")

        await bus.publish(event)

        await failing.wait()
        [letter] = await async_wait_for_dead_letters(bus.transport, 1)
        assert event == letter.event
        assert bus.transport.max_deliveries == letter.deliveries
        assert "ValueError: refused evaluation.completed" in letter.reason
        assert event == Event.from_json(letter.payload)
        assert 1 == bus.metrics.dead_lettered

    async def test_dead_letter_does_not_block_later_events(self, bus: AsyncEventBus) -> None:
        """Events published after one that keeps failing are delivered meanwhile, in order."""
        bus.subscribe(
            EventTypes.USER_UPDATED, AsyncReceived(fail=lambda event, call: event.data["id"] == 0)
        )
        created = bus.subscribe(EventTypes.USER_CREATED, AsyncReceived(expected=5))

        await bus.publish(Event(EventTypes.USER_UPDATED, {"id": 0}))
        for n in range(5):
            await bus.publish(Event(EventTypes.USER_CREATED, {"id": n}))

        assert [0, 1, 2, 3, 4] == [event.data["id"] for event in await created.wait()]
        await async_wait_for_dead_letters(bus.transport, 1)

    async def test_events_without_handlers_are_not_dead_lettered(self, bus: AsyncEventBus) -> None:
        """An event nobody subscribed to is acknowledged, not kept as a failure."""
        received = bus.subscribe(EventTypes.USER_CREATED, AsyncReceived())

        await bus.publish(Event(EventTypes.CHALLENGE_DELETED, {"id": 1}))
        await bus.publish(Event(EventTypes.USER_CREATED, {"id": 1}))

        await received.wait()
        assert [] == await bus.transport.dead_letters()
        assert 0 == bus.metrics.redeliveries

    async def test_bad_input_fails_before_anything_is_published(self, bus: AsyncEventBus) -> None:
        """publish_many with one bad item raises InvalidEventError and publishes none of them."""
        received = bus.subscribe(EventTypes.USER_CREATED, AsyncReceived())
        bad: Any = {"type": EventTypes.USER_CREATED}

        with pytest.raises(InvalidEventError, match="publish takes Event objects, not dict"):
            await bus.publish_many([Event(EventTypes.USER_CREATED, {"id": 1}), bad])
        await bus.publish(Event(EventTypes.USER_CREATED, {"id": 2}))

        assert [2] == [event.data["id"] for event in await received.wait()]
        assert 1 == bus.metrics.published

    async def test_metrics_count_the_traffic(self, bus: AsyncEventBus) -> None:
        """published and delivered count the events; no failures; the lag is measured."""
        received = bus.subscribe(EventTypes.USER_CREATED, AsyncReceived(expected=3))

        await bus.publish_many([Event(EventTypes.USER_CREATED, {"id": n}) for n in range(3)])

        await received.wait()
        snapshot = bus.snapshot()
        assert 3 == snapshot["published"]
        assert 3 == snapshot["delivered"]
        assert {} == snapshot["handler_failures"]
        assert 0.0 <= snapshot["lag_seconds"]["mean"] <= snapshot["lag_seconds"]["max"] < WAIT
        assert bus.transport.name == snapshot["transport"]
