"""AsyncConsistencyMonitor: samples tag invalidations and checks, later, that they held.

Opt-in, in the spirit of Meta's Polaris: consistency measured, in nines, on the live
cache. One invalidation in ``1 / rate`` is sampled (a countdown: the skip costs a
decrement and a comparison). A sampled one reads its tags' versions just before it is
applied: that read, one round trip, is the only cost on the writer's path. After ``delay`` seconds a background worker reads the
versions again, many samples in one read, and counts an inconsistency for each tag back
at its version from before: every entry stored before the invalidation carries that
version, so the cache would serve them again. Nothing is loaded from the database.

The checks wait in a bounded queue: a sample that finds it full is dropped and counted,
never waits. A check whose read fails stays queued and is tried again; an invalidation
or a read that fails is never made to fail by the monitor.

A strict write is sampled when it marks its tags pending: their versions are read
before the marks and checked after its commit (a rollback gives them back by design).
Tags with no version before the invalidation (never read, or already invalidated) are
skipped: nothing cached depends on them. Key and pattern deletions are not sampled: a
refill after them writes the same versions, so no version tells old from new.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from freshcache._async.cache import AsyncCache
from freshcache._consistency import Inconsistency, MonitorMetrics, sampling_period
from freshcache._durations import Seconds, seconds
from freshcache._entries import PENDING_VERSION
from freshcache._exceptions import BackendError, ConfigurationError
from freshcache._kinds import require_kind
from freshcache._synchronization import (
    AsyncBackgroundTask,
    AsyncCriticalSection,
    AsyncEvent,
    AsyncLock,
)

log = logging.getLogger("freshcache")

Versions = list[tuple[str, str]]  # (tag, version before the invalidation)
IDLE = 5.0  # seconds the worker waits for a sample before it stops


@dataclass(frozen=True)
class _Sample:
    versions: Versions
    invalidated_at: float  # Unix time, for the report
    due: float  # monotonic time of the check


class AsyncConsistencyMonitor:
    """Samples ``cache``'s tag invalidations and counts those that did not hold after ``delay``.

    ``rate`` is the fraction sampled (one in ``round(1 / rate)``); ``max_queued`` bounds
    the samples waiting for their check; ``batch`` is the most tags one check reads.
    The monitor attaches itself to the cache; ``aclose()`` detaches it.
    """

    def __init__(
        self,
        cache: AsyncCache,
        *,
        rate: float = 0.01,
        delay: Seconds = 1.0,
        max_queued: int = 10_000,
        batch: int = 1_000,
        max_examples: int = 20,
    ) -> None:
        require_kind(cache, AsyncCache, "AsyncConsistencyMonitor")
        period = sampling_period(rate)
        delay = seconds("delay", delay, zero_allowed=True)
        for name, value, least in (
            ("max_queued", max_queued, 1),
            ("batch", batch, 1),
            ("max_examples", max_examples, 0),
        ):
            if value.__class__ is not int or value < least:
                raise ConfigurationError(
                    f"{name} must be a whole number of at least {least}, not {value!r}"
                )
        if cache.monitor is not None:
            raise ConfigurationError("this cache has a consistency monitor already")
        self.cache = cache
        self.rate = rate
        self.period = period
        self.delay = delay
        self.max_queued = max_queued
        self.batch = batch
        self.metrics = MonitorMetrics(max_examples)
        self._countdown = period
        self._queue: deque[_Sample] = deque()
        self._held: dict[str, Versions] = {}  # sampled strict writes still open, by token
        self._guard = AsyncCriticalSection()
        self._checking = AsyncLock()
        self._active = False
        self._closing = False
        self._wake = AsyncEvent()
        self._worker = AsyncBackgroundTask(self._run, "freshcache-consistency-monitor")
        cache.monitor = self

    async def __aenter__(self) -> AsyncConsistencyMonitor:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # The writer's side: called by the cache around each tag invalidation

    def take(self) -> bool:
        """Is this invalidation sampled? A countdown: nothing else is spent on a skipped one.

        Threads racing on it may shift a sample by one invalidation; no lock is worth that.
        """
        self._countdown -= 1
        if self._countdown > 0:
            return False
        self._countdown = self.period
        return True

    async def versions_before(self, tags: Sequence[str]) -> Versions | None:
        """The tags' versions just before a sampled invalidation; None when nothing to check."""
        metrics = self.metrics
        metrics.sampled += len(tags)
        backend = self.cache.backend
        try:
            current = await self.cache.guard.call(lambda: backend.tag_versions(tags))
        except BackendError as exc:
            # The invalidation goes on regardless: only its check is lost.
            metrics.errors += 1
            log.debug("consistency monitor could not read versions before an invalidation: %s", exc)
            return None
        found = [
            (tag, version)
            for tag in tags
            if (version := current.get(tag)) is not None and version != PENDING_VERSION
        ]
        metrics.skipped += len(tags) - len(found)
        return found or None

    def watch(self, versions: Versions) -> None:
        """Queue the check of an invalidation that was applied; dropped (and counted) when full."""
        sample = _Sample(versions, time.time(), time.monotonic() + self.delay)
        with self._guard:
            if len(self._queue) >= self.max_queued or self._closing:
                self.metrics.dropped += len(versions)
                return
            self._queue.append(sample)
            self.metrics.queued = len(self._queue)
            start = not self._active
            self._active = True
            idle = None if start or len(self._queue) > 1 else self._wake  # a worker waits for work
        if start:
            self._worker.start()
        elif idle is not None:
            idle.set()

    async def hold(self, token: str, tags: Sequence[str]) -> None:
        """A sampled strict write: keep its tags' versions from before its marks until it ends."""
        versions = await self.versions_before(tags)
        if versions is None:
            return
        with self._guard:
            if len(self._held) >= self.max_queued:  # writers that never ended: forget the oldest
                self.metrics.dropped += len(self._held.pop(next(iter(self._held))))
            self._held[token] = versions

    def release(self, token: str, *, committed: bool) -> None:
        """A strict write ended: check its tags if it committed; a rollback restores versions by design."""
        if not self._held:
            return
        with self._guard:
            versions = self._held.pop(token, None)
        if versions is None:
            return
        if committed:
            self.watch(versions)
        else:
            self.metrics.skipped += len(versions)

    # The checks, off the writer's path

    async def check_due(self, *, everything: bool = False) -> int:
        """Check the samples whose delay has passed (all of them with ``everything``), one read.

        How many samples were checked; 0 when none was due or the read failed (then they
        stay queued, to be tried again). Checks run one at a time: a drain returns only once
        the worker's check in flight, if any, is counted.
        """
        async with self._checking:
            return await self._check(everything)

    async def _check(self, everything: bool) -> int:
        now = time.monotonic()
        due: list[_Sample] = []
        tags: dict[str, None] = {}
        with self._guard:
            queue = self._queue
            while queue and len(tags) < self.batch and (everything or queue[0].due <= now):
                sample = queue.popleft()
                due.append(sample)
                tags.update(dict.fromkeys(tag for tag, _ in sample.versions))
        if not due:
            return 0
        backend = self.cache.backend
        try:
            current = await self.cache.guard.call(lambda: backend.tag_versions(list(tags)))
        except BackendError as exc:
            self.metrics.errors += 1
            log.debug("consistency monitor could not read versions for its checks: %s", exc)
            with self._guard:
                self._queue.extendleft(reversed(due))
            return 0
        checked_at = time.time()
        metrics = self.metrics
        for sample in due:
            for tag, version in sample.versions:
                metrics.checked += 1
                if current.get(tag) == version:
                    metrics.inconsistent += 1
                    metrics.examples.append(
                        Inconsistency(tag, version, sample.invalidated_at, checked_at)
                    )
                    log.error(
                        "consistency monitor: tag %r is back at version %s, which it had before "
                        "an invalidation %.1f s ago: entries from before it are served",
                        tag,
                        version,
                        checked_at - sample.invalidated_at,
                    )
        with self._guard:
            metrics.queued = len(self._queue)
        return len(due)

    async def drain(self) -> None:
        """Check every queued sample now, whatever its delay (for tests and at close)."""
        while await self.check_due(everything=True):
            pass

    async def _run(self) -> None:
        # The worker outlives an empty queue by IDLE seconds: starting one per sample (a
        # thread, for Cache) would cost more than the checks it makes.
        while True:
            with self._guard:
                if self._closing:
                    self._active = False
                    return
                idle = not self._queue
                wait = IDLE if idle else self._queue[0].due - time.monotonic()
                wake = self._wake = AsyncEvent()  # set by aclose, or by watch if idle
            if idle:
                if not await wake.wait(wait):
                    with self._guard:
                        if not self._queue:
                            self._active = False
                            return
            elif wait > 0:
                await wake.wait(wait)  # the head is the earliest due: a new sample waits longer
            elif not await self.check_due():
                await wake.wait(min(max(self.delay, 0.1), 1.0))  # the read failed: later

    # Reports

    def snapshot(self) -> dict[str, Any]:
        """The counts, the ratio and the nines the sample allows (the table's keys)."""
        return self.metrics.snapshot()

    def report(self) -> dict[str, Any]:
        """The snapshot, the claim it supports in words, the latest inconsistencies, the settings."""
        out = self.metrics.report()
        out["rate"] = self.rate
        out["delay_seconds"] = self.delay
        return out

    async def aclose(self, timeout: float = 5.0) -> None:
        """Stop checking and detach from the cache; samples not yet checked are left unchecked."""
        with self._guard:
            self._closing = True
            wake = self._wake
        if self.cache.monitor is self:
            self.cache.monitor = None
        wake.set()
        await self._worker.join(timeout)
