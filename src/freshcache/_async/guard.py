"""The guard: the one place that knows the backend's health, and that every backend call passes.

Before a call the cache asks it (``admit`` refuses while the breaker is open, ``skip``
says a read should not be sent); after, it tells it how the call went (``succeeded``,
``failed``); ``call`` does the three around one operation. The guard holds the circuit
breaker (see ``_breaker``), counts what was not sent (``backend_skips``) and what failed
(``backend_errors``), and wakes whoever waits for the backend (the retry queues) the
moment it answers again.
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable
from typing import TypeVar

from freshcache._async.backends.base import AsyncBackend
from freshcache._breaker import CircuitBreaker
from freshcache._exceptions import BackendError, BackendUnavailableError
from freshcache._metrics import CacheMetrics

T = TypeVar("T")


class AsyncBackendGuard:
    """The breaker and the counts of one cache's backend calls."""

    def __init__(self, backend: AsyncBackend, metrics: CacheMetrics, cooldown: float) -> None:
        self.backend = backend
        self.metrics = metrics
        self.breaker = CircuitBreaker(cooldown)
        # Held weakly: a manager dropped without aclose() must not live on in its cache.
        self._listeners: list[weakref.WeakMethod[Callable[[], None]]] = []

    def skip(self) -> bool:
        """True while the breaker is open: the call is not to be sent (counted as skipped)."""
        breaker = self.breaker
        if not breaker.open_until or breaker.allow():
            return False
        self.metrics.backend_skips += 1
        return True

    def admit(self) -> None:
        """Raise BackendUnavailableError, sending nothing, while the breaker is open."""
        if self.skip():
            raise BackendUnavailableError(
                f"{self.backend.name} failed moments ago and is not asked again for up to "
                f"{self.breaker.cooldown:.1f} s (circuit breaker open)"
            )

    def succeeded(self) -> None:
        if self.breaker.open_until:
            self.breaker.succeeded()
            for reference in list(self._listeners):
                listener = reference()
                if listener is not None:
                    listener()
                elif reference in self._listeners:
                    self._listeners.remove(reference)

    def failed(self, exc: BackendError) -> None:
        if isinstance(exc, BackendUnavailableError):
            return  # refused here, never sent: it says nothing about the backend
        self.metrics.backend_errors += 1
        self.breaker.failed()

    async def call(self, send: Callable[[], Awaitable[T]]) -> T:
        """``send()``, refused while the breaker is open; its outcome recorded.

        A cancelled call records nothing: the caller left, the backend did not fail.
        """
        self.admit()
        try:
            result = await send()
        except BackendError as exc:
            self.failed(exc)
            raise
        self.succeeded()
        return result

    async def probe(self) -> bool:
        """Ping the backend even while the breaker is open; True, and the breaker closed, if it answers.

        For background work that no caller waits on (the retry queue), so that what it
        holds is applied within one retry of the backend answering, however long the
        breaker's cooldown has grown. A failed ping is counted but grows no cooldown.
        """
        try:
            await self.backend.ping()
        except BackendError:
            self.metrics.backend_errors += 1
            return False
        self.succeeded()
        return True

    def on_recovery(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener()``, a method held weakly, whenever the breaker closes; returns a function that stops it."""
        reference = weakref.WeakMethod(listener)
        self._listeners.append(reference)

        def stop() -> None:
            if reference in self._listeners:
                self._listeners.remove(reference)

        return stop
