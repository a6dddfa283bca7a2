"""Where invalidations go when the backend fails: a sink, and the default one, a retry queue."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from time import monotonic
from typing import Protocol

from freshcache._async.cache import AsyncCache
from freshcache._durations import Seconds, seconds
from freshcache._exceptions import BackendError, ConfigurationError
from freshcache._invalidations import Invalidation
from freshcache._kinds import require_kind
from freshcache._synchronization import AsyncBackgroundTask, AsyncCriticalSection, AsyncEvent

log = logging.getLogger("freshcache")


class AsyncFailureSink(Protocol):
    """Takes an invalidation the backend refused, and sees that it is applied later.

    One with a ``pending_token`` is a strict write's commit: applying it means releasing
    that token's marks (``cache.clear_pending(tags, token=..., committed=True)``), which
    also gives the tags new versions; invalidating the tags alone would leave them pending.
    """

    async def put(self, invalidation: Invalidation) -> None: ...

    def __len__(self) -> int: ...


# Optional, beside put: ``async settled(timeout) -> bool``, True once everything put so far
# has been applied (False if ``timeout`` seconds passed first). A strict commit whose
# invalidation went to the sink waits on it, so that it returns after its invalidation;
# with a sink that lacks it, the commit returns at once.


class AsyncRetryQueue:
    """Failed invalidations, deduplicated and bounded, retried in the background with backoff.

    Invalidating a tag twice is invalidating it once, so the queue keeps sets. When more
    than ``max_items`` are waiting the queue stops remembering them one by one and, once
    the backend answers, deletes every entry of the namespace instead: colder, but never
    stale. Tag versions and pending marks are left alone by that, so open writers stay
    safe (marks whose release was dropped expire after the manager's ``pending_ttl``).

    While the breaker is open the worker pings the backend at each retry, itself (no
    caller waits on it), and it wakes as soon as any call finds the backend back: what
    it holds is applied within about ``max_delay`` of the backend answering. Until then,
    reads of the cache are suspended (see ``AsyncCache.suspend_reads``).
    """

    def __init__(
        self,
        cache: AsyncCache,
        *,
        max_items: int = 100_000,
        first_delay: Seconds = 0.1,
        max_delay: Seconds = 1.0,
    ) -> None:
        require_kind(cache, AsyncCache, "AsyncRetryQueue")
        if max_items < 1:
            raise ConfigurationError(f"max_items must be at least 1, not {max_items}")
        self.cache = cache
        self.max_items = max_items
        self.first_delay = seconds("first_delay", first_delay)
        self.max_delay = seconds("max_delay", max_delay)
        self.overflows = 0
        self.on_applied: Callable[[Invalidation], Awaitable[None]] | None = None
        # Each item with the number it was (last) queued under: a drain removes an item only
        # if nobody queued it again while the drain ran.
        self._tags: dict[str, int] = {}
        self._keys: dict[str, int] = {}
        self._patterns: dict[str, int] = {}
        self._releases: dict[str, tuple[tuple[str, ...], int]] = {}  # by the writer's token
        self._sequence = 0
        # Everything queued under this number or an earlier one has been applied.
        self._applied_through = 0
        self._applied = AsyncEvent()  # set (and replaced) when _applied_through moves
        self._overflow = 0  # 0: none; else the number of the overflow a drain must clear
        self._active = False
        self._guard = AsyncCriticalSection()
        self._closing = False
        self._retrying = False
        self._wake = AsyncEvent()
        self._stop_listening = cache.guard.on_recovery(self._wake_up)
        self._worker = AsyncBackgroundTask(self._run, "freshcache-retry-queue")

    def __len__(self) -> int:
        queued = len(self._tags) + len(self._keys) + len(self._patterns) + len(self._releases)
        return queued + bool(self._overflow)

    async def put(self, invalidation: Invalidation) -> None:
        with self._guard:
            self._sequence += 1
            number = self._sequence
            if invalidation.pending_token is None:
                self._tags.update(dict.fromkeys(invalidation.tags, number))
            else:
                self._releases[invalidation.pending_token] = (invalidation.tags, number)
            self._keys.update(dict.fromkeys(invalidation.keys, number))
            self._patterns.update(dict.fromkeys(invalidation.patterns, number))
            if len(self) > self.max_items:
                self.overflows += 1
                self._overflow = number
                self._tags.clear()
                self._keys.clear()
                self._patterns.clear()
                self._releases.clear()
            start = not self._active
            self._active = True
            waiting = len(self)
            # Under the guard, so that a drain finishing now cannot resume reads after it.
            self.cache.suspend_reads(self)
        log.warning(
            "invalidation of %d tags, %d keys, %d patterns failed; queued for retry (%d waiting)",
            len(invalidation.tags),
            len(invalidation.keys),
            len(invalidation.patterns),
            waiting,
        )
        if start:
            self._wake = AsyncEvent()  # a recovery seen while idle is no reason to retry at once
            self._worker.start()

    async def drain(self) -> bool:
        """Try once to apply everything queued; True when the queue is empty afterwards."""
        with self._guard:
            queued_tags, queued_keys = dict(self._tags), dict(self._keys)
            queued_patterns, overflowed = dict(self._patterns), self._overflow
            queued_releases = dict(self._releases)
            through = self._sequence
        tags, keys, patterns = list(queued_tags), list(queued_keys), list(queued_patterns)
        released = [tag for tags_of, _ in queued_releases.values() for tag in tags_of]
        if not (tags or keys or patterns or queued_releases or overflowed):
            with self._guard:
                self._applied_up_to(through)
            self.cache.resume_reads(self)
            return True
        try:
            if overflowed:
                await self.cache.invalidate_pattern("*", confirm_all=True)
            for token, (release_tags, _) in queued_releases.items():
                await self.cache.clear_pending(release_tags, token=token, committed=True)
            if tags:
                await self.cache.invalidate_tags(tags)
            if keys:
                await self.cache.invalidate_keys(keys)
            for pattern in patterns:
                await self.cache.invalidate_pattern(pattern, confirm_all=True)
        except BackendError as exc:
            log.debug("retry of queued invalidations failed: %s", exc)
            return False
        with self._guard:
            for queue, applied in (
                (self._tags, queued_tags),
                (self._keys, queued_keys),
                (self._patterns, queued_patterns),
            ):
                for item, number in applied.items():
                    if queue.get(item) == number:  # not queued again meanwhile
                        del queue[item]
            for token, release in queued_releases.items():
                if self._releases.get(token) == release:
                    del self._releases[token]
            if overflowed and self._overflow == overflowed:
                self._overflow = 0
            # An item queued again since was applied after its earlier number, too.
            self._applied_up_to(through)
            empty = not len(self)
            if empty:
                self.cache.resume_reads(self)
        log.warning(
            "applied %d queued tag, %d key and %d pattern invalidations and %d releases%s",
            len(tags),
            len(keys),
            len(patterns),
            len(queued_releases),
            " and dropped every entry after an overflow" if overflowed else "",
        )
        if self.on_applied is not None:
            await self.on_applied(
                Invalidation(
                    tags=tuple(dict.fromkeys([*released, *tags])),
                    keys=tuple(keys),
                    patterns=(*patterns, *(["*"] if overflowed else [])),
                    source="retry queue",
                )
            )
        return empty

    def _applied_up_to(self, number: int) -> None:
        """Under the guard: everything queued under ``number`` or before is applied; wake the waiters."""
        if number > self._applied_through:
            self._applied_through = number
            applied, self._applied = self._applied, AsyncEvent()
            applied.set()

    async def settled(self, timeout: float) -> bool:
        """Wait until everything queued so far has been applied; False if ``timeout`` seconds passed first."""
        deadline = monotonic() + timeout
        with self._guard:
            number = self._sequence
        while True:
            with self._guard:
                if self._applied_through >= number:
                    return True
                applied = self._applied
            left = deadline - monotonic()
            if left <= 0 or not await applied.wait(left):
                with self._guard:
                    return self._applied_through >= number

    def _wake_up(self) -> None:
        """The backend answered a call again: retry now rather than at the end of the delay."""
        if not self._retrying:  # the worker's own probe closing the breaker is no news
            self._wake.set()

    async def _run(self) -> None:
        delay = self.first_delay
        while True:
            await self._wake.wait(delay)
            self._wake = AsyncEvent()
            if self._closing:
                return
            self._retrying = True
            try:
                if self.cache.breaker.is_open:
                    # No caller waits on this worker: it may ask what the breaker spares them.
                    drained = await self.cache.guard.probe() and await self.drain()
                else:
                    drained = await self.drain()
            finally:
                self._retrying = False
            with self._guard:
                if not len(self):
                    self._active = False
                    return
            delay = self.first_delay if drained else min(delay * 2, self.max_delay)

    async def aclose(self, timeout: float = 5.0) -> None:
        """Stop retrying. What is still queued is lost (and logged): the outbox is the durable path."""
        self._closing = True
        self._stop_listening()
        self._wake.set()
        await self._worker.join(timeout)
        if len(self):
            log.error("%d invalidations were still queued at close", len(self))
