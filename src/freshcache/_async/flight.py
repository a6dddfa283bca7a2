"""Single-flight: one load of a key at a time in this process; the callers that arrive meanwhile join it.

Across processes the lease does the same job (see ``lease``); here, callers of one process
wait for their leader without asking the backend at all.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

from freshcache._entries import MISSING
from freshcache._metrics import CacheMetrics
from freshcache._synchronization import AsyncEvent

# What a follower returns when it must lead the next attempt itself. Not MISSING: a
# loader may return MISSING, and a follower hands over whatever its leader loaded.
_LEAD_AGAIN: Any = object()


class Flight:
    """One load in progress in this process; the callers that arrive meanwhile wait on it.

    ``snapshot_at`` is when the leader last read the tag versions (before its database
    read). A caller that arrived before then may take the value as it is; one that
    arrived later may not: a write could have finished in between.
    """

    __slots__ = ("done", "error", "snapshot_at", "value")

    def __init__(self) -> None:
        self.done = AsyncEvent()
        self.value: Any = MISSING
        self.error: BaseException | None = None
        self.snapshot_at = math.inf


class AsyncFlights:
    """The loads running in this process, by key: the first caller of a key leads, later ones join.

    ``running`` is public to the cache's hit path, which checks it without a call.
    """

    __slots__ = ("metrics", "running")

    def __init__(self, metrics: CacheMetrics) -> None:
        self.running: dict[str, Flight] = {}
        self.metrics = metrics

    async def load(
        self,
        key: str,
        lead: Callable[[Flight], Awaitable[Any]],
        *,
        arrived: float,
        patience: float,
        alone: Callable[[], Awaitable[Any]],
        vouch: Callable[[], Awaitable[Any]],
    ) -> Any:
        """``lead(flight)``'s result, shared by every caller of ``key`` that joins the load.

        A caller that arrived at ``arrived`` waits at most ``patience`` seconds for its
        leader, then runs ``alone()``. A leader's value read before the caller arrived is
        taken only when ``vouch()`` (a read of the cache, now) finds one; else the caller
        leads a load that starts after it.
        """
        flight = Flight()
        # setdefault is atomic, so exactly one caller (task or thread) leads the load.
        while (leader := self.running.setdefault(key, flight)) is not flight:
            value = await self._follow(leader, arrived, patience, alone, vouch)
            if value is not _LEAD_AGAIN:
                return value
        try:
            flight.value = await lead(flight)
            return flight.value
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            if self.running.get(key) is flight:
                del self.running[key]
            flight.done.set()

    async def _follow(
        self,
        leader: Flight,
        arrived: float,
        patience: float,
        alone: Callable[[], Awaitable[Any]],
        vouch: Callable[[], Awaitable[Any]],
    ) -> Any:
        """The value ``leader`` loaded (or ``alone()``'s), or _LEAD_AGAIN."""
        self.metrics.inflight_waits += 1
        # The leader waits at most lease_wait for another process, then loads.
        if not await leader.done.wait(patience):
            self.metrics.lease_timeouts += 1
            return await alone()
        if leader.error is None:
            if arrived <= leader.snapshot_at:
                return leader.value
            # The leader read its data before we arrived; a write may have finished in
            # between. Take its value only as the cache vouches for it now.
            value = await vouch()
            return _LEAD_AGAIN if value is MISSING else value
        if isinstance(leader.error, Exception):
            raise leader.error
        return _LEAD_AGAIN  # the leader was cancelled or interrupted, not us: lead the next attempt
