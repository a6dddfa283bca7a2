"""A circuit breaker: after a backend failure, stop asking the backend for a while.

A server that refuses connections fails in a millisecond, but one that hangs (paused,
partitioned, swapping) costs every caller a full socket timeout. A failure opens the
breaker for ``cooldown`` seconds: reads go straight to the loader, invalidations fail at
once and are queued by the manager. When the cooldown ends, one caller probes; its
success closes the breaker, its failure doubles the cooldown (up to ``max_cooldown``).

Only a failed probe grows the cooldown. Calls that were already in flight when the
breaker opened fail one after the other (a dozen of them in a short stall); they say
nothing the first failure did not, and doubling once per call would turn a 0.1 s blip
into 30 s without a cache. The breaker cannot tell which failure is the probe's, so a
late one arriving while a probe is out counts for it: at most one doubling per probe.
"""

from __future__ import annotations

import time


class CircuitBreaker:
    __slots__ = ("cooldown", "first_cooldown", "max_cooldown", "open_until", "probing")

    def __init__(self, cooldown: float = 0.5, max_cooldown: float = 30.0) -> None:
        self.first_cooldown = self.cooldown = cooldown  # cooldown: the current open period
        self.max_cooldown = max_cooldown
        self.open_until = 0.0  # 0.0: closed, the hit path checks only this
        self.probing = False  # a probe was let through and has not failed yet

    def allow(self) -> bool:
        """May this call go to the backend? While open, no; at the end of a cooldown, one probe."""
        if not self.open_until:
            return True
        now = time.monotonic()
        if now < self.open_until:
            return False
        self.open_until = now + self.cooldown  # re-armed: the others wait for this probe
        self.probing = True
        return True

    def failed(self) -> None:
        """A call failed: open a closed breaker; a failed probe doubles the cooldown."""
        if not self.open_until:
            self.cooldown = self.first_cooldown
        elif self.probing:
            self.cooldown = min(self.cooldown * 2, self.max_cooldown)
        else:
            return  # sent before the breaker opened: nothing new
        self.probing = False
        self.open_until = time.monotonic() + self.cooldown

    def succeeded(self) -> None:
        self.open_until = 0.0
        self.cooldown = self.first_cooldown
        self.probing = False

    @property
    def is_open(self) -> bool:
        return bool(self.open_until) and time.monotonic() < self.open_until
