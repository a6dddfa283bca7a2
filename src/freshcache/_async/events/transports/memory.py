"""The in-process transport, the default: events go to the handlers in the publisher's call.

``publish`` returns after every handler has run on each event (the async bus bounds each
coroutine handler by its timeout; the sync bus runs them in the publishing thread), so
there is nothing to start and no thread or task of its own. An event whose handlers
failed is delivered again at once, up to ``max_deliveries`` times, then kept in a bounded
list of dead letters: the same contract as the cross-process transports, with nothing
to survive a crash of the process.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence

from freshcache._async.events.transports.base import AsyncEventTransport, check_max_deliveries
from freshcache._events import DeadLetter, Event
from freshcache._exceptions import ConfigurationError


class AsyncMemoryTransport(AsyncEventTransport):
    """Delivers in the publisher's own call; redelivers at once; dead letters in memory."""

    name = "memory"

    def __init__(self, *, max_deliveries: int = 3, max_dead_letters: int = 1000) -> None:
        self.max_deliveries = check_max_deliveries(max_deliveries)
        if max_dead_letters < 1:
            raise ConfigurationError(f"max_dead_letters must be at least 1, not {max_dead_letters}")
        self._dead: collections.deque[DeadLetter] = collections.deque(maxlen=max_dead_letters)

    async def publish(self, events: Sequence[Event]) -> None:
        deliver = self._attached()
        for event in events:
            reason: str | None = None
            for deliveries in range(1, self.max_deliveries + 1):
                if deliveries > 1:
                    self.metrics.redeliveries += 1
                reason = await deliver(event, deliveries)
                if reason is None:
                    break
            if reason is not None:
                self.metrics.dead_lettered += 1
                self._dead.append(
                    DeadLetter(event.id, reason, self.max_deliveries, event.to_json(), event)
                )

    async def dead_letters(self, count: int = 100) -> list[DeadLetter]:
        return list(self._dead)[:count]
