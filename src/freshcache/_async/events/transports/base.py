"""The transport contract: what carries events from publishers to the bus's handlers.

A transport is given the bus's ``deliver`` once (:meth:`AsyncEventTransport.attach`) and then:

- **publish**: ``publish(events)`` hands the events on in their order. When it returns
  they are durable as far as the transport can make them (on Redis, in the stream); when
  it fails it raises a :class:`~freshcache.FreshcacheError` and may have sent a prefix.
- **delivery**: each event reaches ``deliver(event, deliveries)`` of every consuming bus
  (one per service; processes of one service share the work), in publish order for one
  consumer. ``deliveries`` is 1 the first time and counts up on each redelivery.
- **acknowledgement**: ``deliver`` returns None when every handler succeeded; only then is
  the event acknowledged, and an acknowledged event is never delivered again to that
  service.
- **redelivery**: an event not acknowledged (a handler failed, or the consumer died while
  handling it) is delivered again, to this consumer or to another of the service, so
  delivery is at least once and handlers must be idempotent. A redelivery runs every
  handler again, including those that succeeded the first time.
- **dead letters**: after ``max_deliveries`` deliveries without an acknowledgement, or at
  once for a message that is not a valid event (not JSON, missing fields, an unknown
  type), the message is acknowledged and kept as a :class:`~freshcache.DeadLetter` with the
  reason (the handlers' errors, or what is wrong with it). A bad message never blocks
  the ones after it, and never stops the consumer.
- **lifecycle**: ``start()`` begins consuming (a transport that delivers in the
  publisher's own call has nothing to start); ``aclose()`` stops and releases it.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Sequence
from typing import ClassVar

from freshcache._events import DeadLetter, Event, EventMetrics
from freshcache._exceptions import ConfigurationError

# deliver(event, deliveries) -> None when every handler succeeded, else the reason why not
Deliver = Callable[[Event, int], Awaitable[str | None]]


class AsyncEventTransport(abc.ABC):
    """Carries events to the handlers of every consuming bus: see the module's contract."""

    name: ClassVar[str]
    max_deliveries: int

    _deliver: Deliver | None = None
    metrics: EventMetrics

    def attach(self, deliver: Deliver, metrics: EventMetrics) -> None:
        """Called once by the bus that owns this transport."""
        if self._deliver is not None:
            raise ConfigurationError(
                f"this {self.name} transport already belongs to a bus; give each bus its own"
            )
        self._deliver = deliver
        self.metrics = metrics

    def _attached(self) -> Deliver:
        if self._deliver is None:
            raise ConfigurationError(f"this {self.name} transport is not attached to a bus")
        return self._deliver

    @abc.abstractmethod
    async def publish(self, events: Sequence[Event]) -> None:
        """Hand ``events`` on, in order."""

    async def start(self) -> None:  # noqa: B027 - optional: most in-process transports need none
        """Begin consuming; a transport that delivers as it publishes has nothing to do."""

    async def aclose(self) -> None:  # noqa: B027 - optional, as start
        """Stop consuming and release connections."""

    @abc.abstractmethod
    async def dead_letters(self, count: int = 100) -> list[DeadLetter]:
        """The oldest ``count`` dead letters of this consumer's service."""


def check_max_deliveries(max_deliveries: int) -> int:
    if (
        isinstance(max_deliveries, bool)
        or not isinstance(max_deliveries, int)
        or max_deliveries < 1
    ):
        raise ConfigurationError(f"max_deliveries must be at least 1, not {max_deliveries!r}")
    return max_deliveries
