"""The cache's invalidations, and the two phases of strict mode; failures raise, never swallowed.

Losing an invalidation silently would serve stale data: each raises :class:`BackendError`
(:class:`BackendUnavailableError`, without asking, while the circuit breaker is open), and
the invalidation manager queues and retries them for writers.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, TypeVar

from freshcache._async.backends.base import AsyncBackend
from freshcache._async.batching import AsyncTagBatcher
from freshcache._async.guard import AsyncBackendGuard
from freshcache._durations import seconds
from freshcache._exceptions import InvalidKeyError
from freshcache._keys import validate_key, validate_pattern, validate_tags
from freshcache._metrics import CacheMetrics

if TYPE_CHECKING:
    from freshcache._async.monitor import AsyncConsistencyMonitor

T = TypeVar("T")


class AsyncCacheInvalidation:
    """The invalidating half of :class:`AsyncCache`, on the cache's backend, guard and metrics."""

    backend: AsyncBackend
    guard: AsyncBackendGuard
    metrics: CacheMetrics
    _batcher: AsyncTagBatcher
    # Opt-in (AsyncConsistencyMonitor attaches itself): off, a tag invalidation pays one check.
    monitor: AsyncConsistencyMonitor | None = None

    async def invalidate_tags(self, tags: Iterable[str]) -> None:
        """Give each tag a new version: every entry that depends on it is a miss from now on.

        Concurrent calls share backend operations (group commit); each returns once its
        own tags are applied.
        """
        tag_list = validate_tags(tags)
        if tag_list:
            await self._invalidate_valid_tags(tag_list)

    async def _invalidate_valid_tags(self, tag_list: tuple[str, ...]) -> None:
        """:meth:`invalidate_tags` of tags validated already, each once (the manager's)."""
        monitor = self.monitor
        before = None
        if monitor is not None and monitor.take():
            before = await monitor.versions_before(tag_list)
        await self._timed(lambda: self._batcher.invalidate(tag_list))
        self.metrics.tag_invalidations += len(tag_list)
        if before is not None and monitor is not None:
            monitor.watch(before)

    async def invalidate_keys(self, keys: Iterable[str]) -> int:
        """Delete entries by key; how many existed."""
        if isinstance(keys, str):
            raise InvalidKeyError(f"keys must be a list of strings, not the string {keys!r}")
        key_list = [validate_key(key) for key in keys]
        if not key_list:
            return 0
        deleted = await self._timed(lambda: self.backend.delete(key_list))
        self.metrics.key_invalidations += len(key_list)
        return deleted

    async def invalidate_pattern(self, pattern: str, *, confirm_all: bool = False) -> int:
        """Delete every entry whose key matches the glob ``pattern``: O(keys), prefer tags.

        ``"*"`` alone matches everything and needs ``confirm_all=True``.
        """
        pattern = validate_pattern(pattern, confirm_all=confirm_all)
        deleted = await self._timed(lambda: self.backend.delete_pattern(pattern))
        self.metrics.pattern_invalidations += 1
        return deleted

    # Two phases (strict mode): the invalidation manager's begin, commit and abort

    async def mark_pending(self, tags: Iterable[str], *, token: str, ttl: float) -> None:
        """Hold ``tags`` pending under ``token`` for at most ``ttl`` s: readers bypass them, fills are refused."""
        tag_list = validate_tags(tags)
        ttl = seconds("ttl", ttl)
        if tag_list:
            await self._mark_valid_pending(tag_list, token, ttl)

    async def clear_pending(self, tags: Iterable[str], *, token: str, committed: bool) -> None:
        """``token`` lets go of ``tags``: new versions if ``committed``, else the old ones back."""
        tag_list = validate_tags(tags)
        if tag_list:
            await self._clear_valid_pending(tag_list, token, committed)

    # The same for tags (and a ttl) validated already, each once: the manager's.

    async def _mark_valid_pending(self, tag_list: tuple[str, ...], token: str, ttl: float) -> None:
        monitor = self.monitor
        if monitor is not None and monitor.take():
            await monitor.hold(token, tag_list)  # the versions before: checked once committed
        await self.guard.call(lambda: self.backend.mark_pending(tag_list, token=token, ttl=ttl))

    async def _clear_valid_pending(
        self, tag_list: tuple[str, ...], token: str, committed: bool
    ) -> None:
        await self.guard.call(
            lambda: self.backend.clear_pending(tag_list, token=token, committed=committed)
        )
        if self.monitor is not None:
            self.monitor.release(token, committed=committed)

    async def clear(self) -> None:
        """Remove every entry, version and lease of this cache's namespace."""
        await self.guard.call(self.backend.clear)

    async def _timed(self, send: Callable[[], Awaitable[T]]) -> T:
        started = time.perf_counter()
        try:
            return await self.guard.call(send)
        finally:
            self.metrics.invalidate_latency.observe(time.perf_counter() - started)
