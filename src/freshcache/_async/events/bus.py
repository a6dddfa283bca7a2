"""AsyncEventBus: handlers subscribe to event types; events published reach them, isolated.

A failing handler is counted and logged with the event, and the others still run; the
publisher never sees a handler's error. Handlers of one event run one after the other,
in the order they subscribed, and events reach them in the order they were published
(per publisher; see the transport for order across processes). A coroutine handler that
runs past ``handler_timeout`` is cancelled and counted as failed, so a stuck handler
cannot hold the others up for long.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, TypeVar, overload

from freshcache._async.events.transports.base import AsyncEventTransport
from freshcache._async.events.transports.memory import AsyncMemoryTransport
from freshcache._durations import Seconds, seconds
from freshcache._events import Event, EventMetrics, EventTypes, InvalidEventError
from freshcache._exceptions import ConfigurationError
from freshcache._handlers import Handler, HandlerTimeout, async_call_handler, async_check_handler

log = logging.getLogger("freshcache.events")

H = TypeVar("H", bound=Handler)


def _handler_name(handler: Handler) -> str:
    return getattr(handler, "__qualname__", None) or repr(handler)


class AsyncEventBus:
    """Subscribe handlers to event types and publish events through a transport (in-process by default)."""

    def __init__(
        self,
        transport: AsyncEventTransport | None = None,
        *,
        source: str = "",
        handler_timeout: Seconds = 5.0,
    ) -> None:
        handler_timeout = seconds("handler_timeout", handler_timeout)
        if transport is None:
            transport = AsyncMemoryTransport()
        if not isinstance(transport, AsyncEventTransport):
            raise ConfigurationError(
                f"transport must be an AsyncEventTransport, not {type(transport).__name__}"
            )
        self.transport = transport
        self.source = source
        self.handler_timeout = handler_timeout
        self.metrics = EventMetrics()
        self._handlers: dict[str, list[Handler]] = {}
        transport.attach(self._deliver, self.metrics)

    async def __aenter__(self) -> AsyncEventBus:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Begin consuming events from the transport (needed for a transport across processes)."""
        await self.transport.start()

    async def aclose(self) -> None:
        await self.transport.aclose()

    # Subscribing

    @overload
    def subscribe(self, event_type: str) -> Callable[[H], H]: ...

    @overload
    def subscribe(self, event_type: str, handler: H) -> H: ...

    def subscribe(self, event_type: str, handler: H | None = None) -> H | Callable[[H], H]:
        """Call ``handler(event)`` for each event of ``event_type``; also a decorator.

        Subscribing the same handler twice to one type calls it once.
        """
        EventTypes.require(event_type)
        if handler is None:

            def decorator(function: H) -> H:
                return self.subscribe(event_type, function)

            return decorator
        async_check_handler(handler)
        handlers = self._handlers.setdefault(event_type, [])
        if handler not in handlers:
            handlers.append(handler)
        return handler

    def unsubscribe(self, event_type: str, handler: Handler) -> bool:
        """Stop calling ``handler`` for ``event_type``; False if it was not subscribed."""
        handlers = self._handlers.get(event_type, [])
        if handler not in handlers:
            return False
        handlers.remove(handler)
        return True

    def handlers(self, event_type: str) -> tuple[Handler, ...]:
        return tuple(self._handlers.get(event_type, ()))

    # Publishing

    async def publish(self, event: Event) -> None:
        """Publish one event; handlers' errors never reach the caller."""
        await self.publish_many([event])

    async def publish_many(self, events: Iterable[Event]) -> None:
        """Publish events in order, in one operation of the transport where it can."""
        batch = [self._stamp(event) for event in events]  # bad input fails before any I/O
        if not batch:
            return
        await self.transport.publish(batch)
        self.metrics.published += len(batch)

    def _stamp(self, event: Event) -> Event:
        if not isinstance(event, Event):
            raise InvalidEventError(f"publish takes Event objects, not {type(event).__name__}")
        if not event.source and self.source:
            return dataclasses.replace(event, source=self.source)
        return event

    # Delivering (called by the transport)

    async def _deliver(self, event: Event, deliveries: int) -> str | None:
        """Run every handler of the event; None if all succeeded, else what failed."""
        metrics = self.metrics
        metrics.delivered += 1
        metrics.observe_lag(time.time() - event.occurred_at)
        failures: list[str] = []
        for handler in list(self._handlers.get(event.type, ())):
            started = time.perf_counter()
            try:
                await async_call_handler(handler, event, self.handler_timeout)
            except Exception as exc:
                metrics.failed(event.type)
                if isinstance(exc, HandlerTimeout):
                    metrics.handler_timeouts += 1
                failures.append(f"{_handler_name(handler)}: {type(exc).__name__}: {exc}")
                log.error(
                    "event handler %s failed on %s (delivery %d): %s",
                    _handler_name(handler),
                    event.describe(),
                    deliveries,
                    exc,
                    exc_info=not isinstance(exc, HandlerTimeout),
                )
                continue
            elapsed = time.perf_counter() - started
            if elapsed > self.handler_timeout:
                # Only a plain function can get here: it cannot be interrupted, only reported.
                metrics.handler_timeouts += 1
                log.warning(
                    "event handler %s took %.3f s on %s (handler_timeout is %s s)",
                    _handler_name(handler),
                    elapsed,
                    event.describe(),
                    self.handler_timeout,
                )
            metrics.handler_calls += 1
        return "; ".join(failures) or None

    def snapshot(self) -> dict[str, Any]:
        out = self.metrics.snapshot()
        out["transport"] = self.transport.name
        return out
