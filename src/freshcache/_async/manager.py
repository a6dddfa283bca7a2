"""AsyncInvalidationManager: one place that knows what each change touches, and applies it.

It turns entity changes into tags through :class:`~freshcache.Rules`, applies them to the
cache in one backend operation per call, counts what it does, retries a failing backend
with bounded backoff and then hands the invalidation to a failure sink (by default a
retry queue), so that a write never fails because the cache did.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any

from freshcache._async.cache import AsyncCache
from freshcache._async.failures import AsyncFailureSink, AsyncRetryQueue
from freshcache._calls import async_invoke
from freshcache._durations import Seconds, seconds
from freshcache._entries import new_token
from freshcache._exceptions import BackendError, ConfigurationError
from freshcache._invalidations import EntityChange, Invalidation, PendingWrite
from freshcache._keys import validate_key, validate_pattern, validate_tags
from freshcache._kinds import async_require_method_kind, require_kind
from freshcache._metrics import ManagerMetrics
from freshcache._rules import Rules
from freshcache._synchronization import async_sleep

log = logging.getLogger("freshcache")

Subscriber = Callable[[Invalidation], Any]


class AsyncInvalidationManager:
    """Applies invalidations for entity changes, tags, keys and patterns; never fails a write."""

    def __init__(
        self,
        cache: AsyncCache,
        rules: Rules | None = None,
        *,
        retries: int = 2,
        backoff: Seconds = 0.05,
        max_backoff: Seconds = 1.0,
        pending_ttl: Seconds = 60.0,
        strict_wait: Seconds = 5.0,
        failure_sink: AsyncFailureSink | None = None,
        raise_on_failure: bool = False,
    ) -> None:
        require_kind(cache, AsyncCache, "AsyncInvalidationManager")
        if failure_sink is not None:
            async_require_method_kind(
                failure_sink.put, "failure_sink.put", "AsyncInvalidationManager"
            )
        if retries < 0:
            raise ConfigurationError(f"retries must be zero or more, not {retries}")
        backoff = seconds("backoff", backoff, zero_allowed=True)
        max_backoff = seconds("max_backoff", max_backoff, zero_allowed=True)
        pending_ttl = seconds("pending_ttl", pending_ttl)
        strict_wait = seconds("strict_wait", strict_wait, zero_allowed=True)
        self.cache = cache
        self.rules = rules if rules is not None else Rules()
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.pending_ttl = pending_ttl
        self.strict_wait = strict_wait
        self.raise_on_failure = raise_on_failure
        self.metrics = ManagerMetrics()
        if failure_sink is None:
            queue = AsyncRetryQueue(cache)
            queue.on_applied = self._recovered
            failure_sink = queue
        self.failure_sink = failure_sink
        self._subscribers: list[Subscriber] = []

    async def __aenter__(self) -> AsyncInvalidationManager:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the retry queue's worker (what it still holds is logged as lost)."""
        close = getattr(self.failure_sink, "aclose", None)
        if close is not None:
            await close()

    # Entities

    async def invalidate_entity(
        self,
        entity_type: str,
        *,
        new: Mapping[str, Any] | None = None,
        old: Mapping[str, Any] | None = None,
        changed: Iterable[str] | None = None,
        source: str = "application",
    ) -> Invalidation:
        """Invalidate what one insert (``new``), delete (``old``) or update (both) touches."""
        change = EntityChange(entity_type, new, old, changed)
        return await self.invalidate_entities([change], source=source)

    async def invalidate_entities(
        self, changes: Iterable[EntityChange], *, source: str = "application"
    ) -> Invalidation:
        """Invalidate what several changes touch, in one backend operation (a transaction's worth)."""
        changes = list(changes)
        tags = self.rules.tags_for_changes(changes)  # bad input raises here, before any I/O
        entity_types = self._count_entities(changes)
        return await self._apply(Invalidation(tags=tags, entity_types=entity_types, source=source))

    def _count_entities(self, changes: Iterable[EntityChange]) -> tuple[str, ...]:
        """Count the changes by entity type; the types, each once, in their first order."""
        by_type = self.metrics.invalidations_by_entity_type
        counted: dict[str, int] = {}
        for change in changes:
            counted[change.entity_type] = counted.get(change.entity_type, 0) + 1
        for entity_type, count in counted.items():
            by_type[entity_type] = by_type.get(entity_type, 0) + count
            self.metrics.entity_invalidations += count
        return tuple(counted)

    def entity(self, entity_type: str) -> AsyncEntityInvalidator:
        """A helper for one entity type: ``await manager.entity("user")(id=5)``."""
        self.rules.require(entity_type)
        return AsyncEntityInvalidator(self, entity_type)

    # Tags, keys, patterns

    async def invalidate_tags(
        self, tags: Iterable[str], *, source: str = "application"
    ) -> Invalidation:
        return await self._apply(Invalidation(tags=validate_tags(tags), source=source))

    async def invalidate_keys(
        self, keys: Iterable[str], *, source: str = "application"
    ) -> Invalidation:
        key_list = tuple(dict.fromkeys(validate_key(key) for key in keys))
        return await self._apply(Invalidation(keys=key_list, source=source))

    async def invalidate_pattern(
        self, pattern: str, *, confirm_all: bool = False, source: str = "application"
    ) -> Invalidation:
        """O(keys): prefer tags. ``"*"`` alone needs ``confirm_all=True``."""
        pattern = validate_pattern(pattern, confirm_all=confirm_all)
        return await self._apply(Invalidation(patterns=(pattern,), source=source))

    def batch(self, *, source: str = "application") -> AsyncInvalidationBatch:
        """Collect invalidations and apply them together, in one backend operation, on exit."""
        return AsyncInvalidationBatch(self, source)

    # Two phases (strict mode)

    async def begin(self, tags: Iterable[str], *, ttl: Seconds | None = None) -> PendingWrite:
        """Hold ``tags`` pending before a commit: readers bypass them, fills are refused."""
        tag_list = validate_tags(tags)
        token = new_token()
        deadline = time.monotonic() + self.strict_wait
        if not tag_list:
            return PendingWrite(token, (), True, deadline)
        mark_ttl = self.pending_ttl if ttl is None else seconds("ttl", ttl)
        delay = max(self.backoff, 0.01)
        while True:
            try:
                await self.cache._mark_valid_pending(tag_list, token, mark_ttl)
                return PendingWrite(token, tag_list, True, deadline)
            except BackendError as exc:
                # Unmarked, the commit would let other processes read the old entries
                # until its invalidation lands: wait for the backend, up to strict_wait.
                left = deadline - time.monotonic()
                if left <= 0:
                    # The write goes on; its commit invalidates (or queues) as in commit mode.
                    log.warning("could not mark %d tags pending: %s", len(tag_list), exc)
                    return PendingWrite(token, tag_list, False, deadline)
            await async_sleep(min(delay, left))
            delay = min(delay * 2, self.max_backoff)
            if self.cache.breaker.is_open:
                await self.cache.guard.probe()  # else every mark is refused until the cooldown ends

    async def commit(
        self,
        pending: PendingWrite,
        *,
        changes: Iterable[EntityChange] = (),
        source: str = "transaction",
    ) -> Invalidation:
        """After the commit: give the tags new versions and let go of them."""
        return await self.apply_transaction(
            pending.tags, changes=changes, pending=pending, source=source
        )

    async def apply_transaction(
        self,
        tags: Iterable[str],
        *,
        changes: Iterable[EntityChange] = (),
        pending: PendingWrite | None = None,
        source: str = "transaction",
    ) -> Invalidation:
        """Apply a committed transaction: release its pending write (strict) or invalidate its tags.

        ``changes`` are counted by entity type; their tags are expected among ``tags``.
        """
        tag_list = validate_tags(tags)
        entity_types = self._count_entities(changes)
        invalidation = Invalidation(tags=tag_list, entity_types=entity_types, source=source)
        if not invalidation.tags:
            return invalidation
        if pending is None:
            return await self._apply(invalidation)
        if pending.marked:
            # Carried along so that a retry, too, releases the marks rather than only invalidating.
            invalidation = dataclasses.replace(invalidation, pending_token=pending.token)
            token = pending.token

            async def release() -> None:
                await self.cache._clear_valid_pending(invalidation.tags, token, True)

            applied = await self._apply(invalidation, release)
        else:
            applied = await self._apply(invalidation)  # the marks failed: as in commit mode
        if not applied.applied:
            await self._settle(applied, pending.deadline)
        return applied

    async def _settle(self, invalidation: Invalidation, deadline: float) -> None:
        """A strict commit whose invalidation went to the sink returns once it is applied, or at ``deadline``.

        Until it is applied, another process may read an entry from before the commit: its
        marks may have failed, or been lost with a restarted server. Answering the write
        only once the queue applied it keeps read-after-write across processes through an
        outage shorter than ``strict_wait`` (counted from ``begin``, marks and release
        together); past it the write returns anyway (a write never fails because of the
        cache), and ``unsettled_strict_commits`` counts it.
        """
        settled = getattr(self.failure_sink, "settled", None)
        if settled is None:
            return
        if not await settled(max(0.0, deadline - time.monotonic())):
            self.metrics.unsettled_strict_commits += 1
            log.warning(
                "a strict commit returns before its queued invalidation of %d tags was applied "
                "(strict_wait %s s, counted from begin, ran out): other processes may read its "
                "tags' old entries until it is",
                len(invalidation.tags),
                self.strict_wait,
            )

    async def abort(self, pending: PendingWrite) -> None:
        """After a rollback: let go of the tags; unchanged by anyone, they keep their versions."""
        if not (pending.tags and pending.marked):
            return
        try:
            await self.cache.clear_pending(pending.tags, token=pending.token, committed=False)
        except BackendError as exc:
            # Left alone, the marks would make every reader bypass the tags until they expire.
            # The retry releases them as committed: new versions, a spurious invalidation at worst.
            log.warning("could not clear pending marks after a rollback, queued: %s", exc)
            await self.failure_sink.put(
                Invalidation(
                    tags=pending.tags, source="rollback", applied=False, pending_token=pending.token
                )
            )

    # Notifications

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(invalidation)`` after each applied invalidation; returns an unsubscribe."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    async def _notify(self, invalidation: Invalidation) -> None:
        for callback in list(self._subscribers):
            try:
                await async_invoke(callback, invalidation)
            except Exception:
                self.metrics.notification_errors += 1
                log.exception("invalidation subscriber %r failed", callback)

    # Applying

    async def _invalidate_now(self, invalidation: Invalidation) -> None:
        # Every invalidation's tags were validated on their way in (formatted by the rules,
        # or checked by validate_tags): the cache does not check them a second time.
        if invalidation.tags:
            await self.cache._invalidate_valid_tags(invalidation.tags)
        if invalidation.keys:
            await self.cache.invalidate_keys(invalidation.keys)
        for pattern in invalidation.patterns:
            await self.cache.invalidate_pattern(pattern, confirm_all=True)

    async def _apply(
        self,
        invalidation: Invalidation,
        operation: Callable[[], Awaitable[None]] | None = None,
    ) -> Invalidation:
        """Apply with bounded retries; on failure hand it to the sink. ``operation`` replaces the default."""
        metrics = self.metrics
        started = time.perf_counter()
        attempt = 0
        handed_over = False
        try:
            while True:
                try:
                    if operation is None:
                        await self._invalidate_now(invalidation)
                    else:
                        await operation()
                    break
                except BackendError as exc:
                    # With the breaker open (this failure opened it, or it was open already
                    # and nothing was sent) a retry now would be refused: the sink retries.
                    if attempt >= self.retries or self.cache.breaker.is_open:
                        metrics.invalidate_latency.observe(time.perf_counter() - started)
                        handed_over = True
                        return await self._failed(invalidation, exc)
                    attempt += 1
                    metrics.retried_invalidations += 1
                    await async_sleep(min(self.backoff * 2 ** (attempt - 1), self.max_backoff))
        except BaseException:
            if not handed_over:
                # Cancelled mid-call (a request timeout): whether it landed is unknown, and the
                # change it stands for is committed. The sink sees that it is applied.
                metrics.failed_invalidations += 1
                await self.failure_sink.put(dataclasses.replace(invalidation, applied=False))
            raise
        metrics.invalidate_latency.observe(time.perf_counter() - started)
        self._count(invalidation)
        await self._notify(invalidation)
        return invalidation

    def _count(self, invalidation: Invalidation) -> None:
        metrics = self.metrics
        metrics.tag_invalidations += len(invalidation.tags)
        metrics.key_invalidations += len(invalidation.keys)
        metrics.pattern_invalidations += len(invalidation.patterns)
        metrics.last_invalidation = invalidation

    async def _failed(self, invalidation: Invalidation, exc: BackendError) -> Invalidation:
        self.metrics.failed_invalidations += 1
        failed = dataclasses.replace(invalidation, applied=False)
        self._count(failed)
        await self.failure_sink.put(failed)
        if self.raise_on_failure:
            raise exc
        return failed

    async def _recovered(self, invalidation: Invalidation) -> None:
        self.metrics.recovered_invalidations += 1
        await self._notify(invalidation)

    def snapshot(self) -> dict[str, Any]:
        """The manager's metrics, the failure queue's depth, and the cache's metrics."""
        out = self.metrics.snapshot()
        out["queued_invalidations"] = len(self.failure_sink)
        out["queue_overflows"] = getattr(self.failure_sink, "overflows", 0)
        out["cache"] = self.cache.metrics.snapshot()
        return out


class AsyncEntityInvalidator:
    """Invalidates everything one entity type's rules can name from the values given."""

    def __init__(self, manager: AsyncInvalidationManager, entity_type: str) -> None:
        self.manager = manager
        self.entity_type = entity_type

    async def __call__(self, *, source: str = "application", **values: Any) -> Invalidation:
        return await self.invalidate(source=source, **values)

    async def invalidate(self, *, source: str = "application", **values: Any) -> Invalidation:
        """``invalidate(id=5)``: every tag of the type's rules formattable from ``id``."""
        tags = self.manager.rules.tags_from_values(self.entity_type, values)
        invalidation = Invalidation(tags=tags, entity_types=(self.entity_type,), source=source)
        self.manager._count_entities([EntityChange(self.entity_type, old=values)])
        return await self.manager._apply(invalidation)


class AsyncInvalidationBatch:
    """Collects a transaction's invalidations; applies them in one operation on a clean exit."""

    def __init__(self, manager: AsyncInvalidationManager, source: str) -> None:
        self.manager = manager
        self.source = source
        self.changes: list[EntityChange] = []
        self._tags: dict[str, None] = {}
        self._keys: dict[str, None] = {}
        self._patterns: dict[str, None] = {}
        self.result: Invalidation | None = None

    def entity(
        self,
        entity_type: str,
        *,
        new: Mapping[str, Any] | None = None,
        old: Mapping[str, Any] | None = None,
        changed: Iterable[str] | None = None,
    ) -> None:
        change = EntityChange(entity_type, new, old, changed)
        tags = self.manager.rules.tags_for_changes([change])  # fails fast on bad input
        self._tags.update(dict.fromkeys(tags))
        self.changes.append(change)

    def tags(self, tags: Iterable[str]) -> None:
        self._tags.update(dict.fromkeys(validate_tags(tags)))

    def keys(self, keys: Iterable[str]) -> None:
        self._keys.update(dict.fromkeys(validate_key(key) for key in keys))

    def pattern(self, pattern: str, *, confirm_all: bool = False) -> None:
        self._patterns[validate_pattern(pattern, confirm_all=confirm_all)] = None

    async def __aenter__(self) -> AsyncInvalidationBatch:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            return  # the work failed: there is nothing to invalidate
        invalidation = Invalidation(
            tags=tuple(self._tags),
            keys=tuple(self._keys),
            patterns=tuple(self._patterns),
            entity_types=self.manager._count_entities(self.changes),
            source=self.source,
        )
        self.result = await self.manager._apply(invalidation)
