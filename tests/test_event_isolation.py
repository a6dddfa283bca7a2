"""What differs between the async bus and the sync one: timeouts, coroutine handlers.

What they share under concurrency (order per publisher) is written once, in
tests/_async/test_event_order.py.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from freshcache import (
    AsyncCache,
    AsyncEventBus,
    AsyncInvalidationManager,
    AsyncMemoryTransport,
    Cache,
    ConfigurationError,
    Event,
    EventBus,
    InvalidationManager,
    MemoryTransport,
    invalidation_handlers,
)
from freshcache import EventTypes as T

from .rules import service_rules


async def test_slow_coroutine_handler_is_cut_off_at_the_timeout() -> None:
    """A coroutine handler past handler_timeout is cancelled and counted; the next handler still runs."""
    bus = AsyncEventBus(AsyncMemoryTransport(max_deliveries=1), handler_timeout=0.05)
    cancelled = asyncio.Event()
    after: list[str] = []

    @bus.subscribe(T.CHALLENGE_UPDATED)
    async def stuck(event: Event) -> None:
        try:
            await asyncio.Event().wait()  # never set: only the timeout ends it
        except asyncio.CancelledError:
            cancelled.set()
            raise

    bus.subscribe(T.CHALLENGE_UPDATED, lambda event: after.append("ran"))

    await bus.publish(Event(T.CHALLENGE_UPDATED, {"id": 1}))

    assert cancelled.is_set()
    assert ["ran"] == after
    assert 1 == bus.metrics.handler_timeouts
    assert {T.CHALLENGE_UPDATED: 1} == bus.metrics.handler_failures
    [letter] = await bus.transport.dead_letters()
    assert "HandlerTimeout: took longer than 0.05 s and was cancelled" in letter.reason


def test_slow_handler_on_the_sync_bus_is_reported_not_failed() -> None:
    """A sync handler cannot be interrupted: one past handler_timeout is counted as slow and still succeeds."""
    bus = EventBus(handler_timeout=0.01)
    done = threading.Event()

    @bus.subscribe(T.CHALLENGE_UPDATED)
    def slow(event: Event) -> None:
        done.wait(0.05)  # nobody sets it: a handler that takes 50 ms

    bus.publish(Event(T.CHALLENGE_UPDATED, {"id": 1}))

    assert 1 == bus.metrics.handler_timeouts
    assert {} == bus.metrics.handler_failures
    assert [] == bus.transport.dead_letters()


def test_coroutine_handler_is_refused_by_the_sync_bus() -> None:
    """Subscribing a coroutine function, or an object with an async __call__, to the sync bus fails at once."""
    bus = EventBus()

    async def handler(event: Event) -> None:
        pass

    class Handler:
        async def __call__(self, event: Event) -> None:
            pass

    with pytest.raises(
        ConfigurationError, match="coroutine function: the sync EventBus cannot await it"
    ):
        bus.subscribe(T.USER_UPDATED, handler)
    with pytest.raises(ConfigurationError, match="coroutine function"):
        bus.subscribe(T.USER_UPDATED, Handler())
    assert () == bus.handlers(T.USER_UPDATED)


def test_handler_returning_an_awaitable_fails_on_the_sync_bus() -> None:
    """A plain function that returns a coroutine is a failed handler on the sync bus, with no warning left."""
    bus = EventBus(MemoryTransport(max_deliveries=1))

    async def work() -> None:
        pass

    bus.subscribe(T.USER_UPDATED, lambda event: work())

    bus.publish(Event(T.USER_UPDATED, {"id": 1}))

    [letter] = bus.transport.dead_letters()
    assert "returned an awaitable: the sync EventBus cannot await it" in letter.reason


def test_wiring_refuses_a_bus_and_manager_of_different_worlds() -> None:
    """An async bus with a sync manager, or a sync bus with an async one, is refused with a clear error."""
    sync_manager = InvalidationManager(Cache.from_url("memory://"), service_rules())
    async_manager = AsyncInvalidationManager(AsyncCache.from_url("memory://"), service_rules())
    mapping = {T.USER_UPDATED: "user"}

    with pytest.raises(ConfigurationError, match="not AsyncEventBus with InvalidationManager"):
        invalidation_handlers(AsyncEventBus(), sync_manager, mapping)
    with pytest.raises(ConfigurationError, match="not EventBus with AsyncInvalidationManager"):
        invalidation_handlers(EventBus(), async_manager, mapping)
