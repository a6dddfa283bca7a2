"""The event bus on the in-process transport: the conformance suite, isolation, misuse."""

from __future__ import annotations

import logging

import pytest

from freshcache import (
    AsyncEventBus,
    AsyncEventTransport,
    AsyncMemoryTransport,
    ConfigurationError,
    Event,
    EventTypes,
    InvalidEventError,
)
from freshcache.testing import AsyncEventTransportSuite


class TestMemoryTransport(AsyncEventTransportSuite):
    async def make_transport(self, *, max_deliveries: int = 3) -> AsyncEventTransport:
        return AsyncMemoryTransport(max_deliveries=max_deliveries)


async def test_publish_returns_after_the_handlers_ran() -> None:
    """In process, publish returns once every handler has run on the event: nothing to wait for."""
    bus = AsyncEventBus()
    seen: list[int] = []
    bus.subscribe(EventTypes.USER_CREATED, lambda event: seen.append(event.data["id"]))

    await bus.publish(Event(EventTypes.USER_CREATED, {"id": 7}))

    assert [7] == seen


async def test_failing_handler_is_logged_with_the_event(caplog: pytest.LogCaptureFixture) -> None:
    """A handler's error is logged with the event's type and id, and the publisher does not see it."""
    bus = AsyncEventBus(AsyncMemoryTransport(max_deliveries=1))

    @bus.subscribe(EventTypes.USER_UPDATED)
    def broken(event: Event) -> None:
        raise RuntimeError("database is on fire")

    event = Event(EventTypes.USER_UPDATED, {"id": 1})
    with caplog.at_level(logging.ERROR, logger="freshcache.events"):
        await bus.publish(event)

    [record] = caplog.records
    assert f"user.updated {event.id}" in record.getMessage()
    assert "database is on fire" in record.getMessage()
    assert {EventTypes.USER_UPDATED: 1} == bus.metrics.handler_failures


async def test_sync_handler_on_the_async_bus_is_called() -> None:
    """A plain function subscribed on the async bus is called like a coroutine handler."""
    bus = AsyncEventBus()
    seen: list[str] = []
    bus.subscribe(EventTypes.USER_DELETED, lambda event: seen.append(event.id))
    event = Event(EventTypes.USER_DELETED, {"id": 1})

    await bus.publish(event)

    assert [event.id] == seen


def test_subscribe_refuses_unknown_types_and_non_callables() -> None:
    """subscribe names an unknown or malformed event type, and a handler that is not callable."""
    bus = AsyncEventBus()

    with pytest.raises(InvalidEventError, match=r"unknown event type 'user\.renamed'"):
        bus.subscribe("user.renamed", print)
    with pytest.raises(InvalidEventError, match="dotted lower-case name"):
        bus.subscribe("UserUpdated", print)
    with pytest.raises(ConfigurationError, match="a handler must be callable, not 42"):
        bus.subscribe(EventTypes.USER_UPDATED, 42)  # type: ignore[type-var]


async def test_user_defined_types_work_once_registered() -> None:
    """A type registered with EventTypes.register can be subscribed to and published."""
    paid = EventTypes.register("invoice.paid")
    bus = AsyncEventBus()
    seen: list[str] = []
    bus.subscribe(paid, lambda event: seen.append(event.type))

    await bus.publish(Event(paid, {"id": "inv-1"}))

    assert ["invoice.paid"] == seen


def test_a_transport_belongs_to_one_bus() -> None:
    """Giving one transport to two buses is refused: each bus owns its transport."""
    transport = AsyncMemoryTransport()
    AsyncEventBus(transport)

    with pytest.raises(ConfigurationError, match="already belongs to a bus"):
        AsyncEventBus(transport)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"handler_timeout": 0}, r"handler_timeout must be a positive number of seconds, .*not 0"),
        ({"handler_timeout": float("inf")}, r"handler_timeout must be .*not inf"),
        ({"transport": object()}, "transport must be an AsyncEventTransport, not object"),
    ],
)
def test_bus_options_are_checked(options: dict[str, object], message: str) -> None:
    """A bad option is a configuration error that names it."""
    with pytest.raises(ConfigurationError, match=message):
        AsyncEventBus(**options)  # type: ignore[arg-type]
