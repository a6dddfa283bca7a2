"""A circuit breaker: after a backend failure, stop asking the backend for a while.

A server that refuses connections fails in a millisecond, but one that hangs (paused,
partitioned, swapping) costs every caller a full socket timeout. After a failure the
breaker opens for ``cooldown`` seconds (doubling on each further failure, up to
``max_cooldown``): reads go straight to the loader, invalidations fail at once and are
queued by the manager. When the cooldown ends, one caller probes; its success closes
the breaker.
"""

from __future__ import annotations

import time


class CircuitBreaker:
    __slots__ = ("cooldown", "first_cooldown", "max_cooldown", "open_until")

    def __init__(self, cooldown: float = 0.5, max_cooldown: float = 30.0) -> None:
        self.first_cooldown = self.cooldown = cooldown
        self.max_cooldown = max_cooldown
        self.open_until = 0.0  # 0.0: closed, the hit path checks only this

    def allow(self) -> bool:
        """May this call go to the backend? While open, no; at the end of a cooldown, one probe."""
        if not self.open_until:
            return True
        now = time.monotonic()
        if now < self.open_until:
            return False
        self.open_until = now + self.cooldown  # re-armed: the others wait for this probe
        return True

    def failed(self) -> None:
        self.open_until = time.monotonic() + self.cooldown
        self.cooldown = min(self.cooldown * 2, self.max_cooldown)

    def succeeded(self) -> None:
        self.open_until = 0.0
        self.cooldown = self.first_cooldown

    @property
    def is_open(self) -> bool:
        return bool(self.open_until) and time.monotonic() < self.open_until
