"""The guard every backend call goes through: the breaker's refusals, and reads suspended per cache."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Sequence

import pytest

import freshcache
from freshcache import (
    PENDING_VERSION,
    AsyncCache,
    AsyncInvalidationManager,
    AsyncMemoryBackend,
    AsyncRetryQueue,
    BackendError,
    Invalidation,
)


class FailingBackend(AsyncMemoryBackend):
    """The memory backend with a switch that makes tag operations fail, counting the calls that reach it."""

    def __init__(self) -> None:
        super().__init__()
        self.failing = False
        self.calls = 0

    async def _reach(self) -> None:
        self.calls += 1
        if self.failing:
            raise BackendError("the server went away")

    async def invalidate_tags(self, tags: Sequence[str]) -> None:
        await self._reach()
        await super().invalidate_tags(tags)

    async def mark_pending(self, tags: Sequence[str], *, token: str, ttl: float) -> None:
        await self._reach()
        await super().mark_pending(tags, token=token, ttl=ttl)

    async def clear_pending(self, tags: Sequence[str], *, token: str, committed: bool) -> None:
        await self._reach()
        await super().clear_pending(tags, token=token, committed=committed)


async def test_reads_stay_suspended_until_every_retry_queue_of_the_cache_has_drained() -> None:
    """Two managers share a cache: reads resume only when the last of their retry queues is empty, in either order."""
    cache = AsyncCache(AsyncMemoryBackend())
    first = AsyncRetryQueue(cache, first_delay=3600)  # drained by the test, not in the background
    second = AsyncRetryQueue(cache, first_delay=3600)
    managers = [
        AsyncInvalidationManager(cache, failure_sink=first),
        AsyncInvalidationManager(cache, failure_sink=second),
    ]
    try:
        for drained_first, drained_last in ((first, second), (second, first)):
            await first.put(Invalidation(tags=("a",)))
            await second.put(Invalidation(tags=("b",)))
            assert cache.reads_suspended

            assert await drained_first.drain()
            assert cache.reads_suspended  # the other queue still holds an invalidation
            assert await drained_last.drain()
            assert not cache.reads_suspended
    finally:
        for manager in managers:
            await manager.aclose()


async def test_an_open_breaker_refuses_with_a_public_error() -> None:
    """While the breaker is open an invalidation is not sent, and the caller gets BackendUnavailableError, a public BackendError that names the breaker."""
    backend = FailingBackend()
    cache = AsyncCache(backend)
    backend.failing = True
    with pytest.raises(BackendError, match="the server went away"):
        await cache.invalidate_tags(["a"])
    calls = backend.calls

    for call in (
        lambda: cache.invalidate_tags(["a"]),
        lambda: cache.invalidate_keys(["k"]),
        lambda: cache.invalidate_pattern("k*"),
        lambda: cache.mark_pending(["a"], token="t", ttl=5),
        lambda: cache.clear_pending(["a"], token="t", committed=True),
    ):
        with pytest.raises(BackendError, match="circuit breaker") as refused:
            await call()
        assert type(refused.value).__name__ in freshcache.__all__
    assert isinstance(refused.value, freshcache.BackendUnavailableError)  # type: ignore[attr-defined]
    assert calls == backend.calls
    assert (1, 5) == (cache.metrics.backend_errors, cache.metrics.backend_skips)


async def test_with_the_breaker_open_a_strict_write_sends_nothing_and_is_queued() -> None:
    """With the breaker open and strict_wait=0, begin() and commit() make no backend call, do not retry, and hand the write to the retry queue."""
    backend = FailingBackend()
    cache = AsyncCache(backend)
    queue = AsyncRetryQueue(cache, first_delay=3600)
    # strict_wait=0: no wait for a recovery (tests/system/test_manager_faults.py has the waits).
    manager = AsyncInvalidationManager(
        cache, retries=2, backoff=60.0, failure_sink=queue, strict_wait=0
    )
    try:
        backend.failing = True
        assert not (await manager.invalidate_tags(["a"])).applied  # opens the breaker
        calls = backend.calls

        pending = await manager.begin(["b"])
        committed = await manager.commit(pending)

        assert calls == backend.calls
        assert not pending.marked
        assert not committed.applied
        assert 0 == manager.metrics.retried_invalidations
        assert 2 == len(queue)
    finally:
        await manager.aclose()


async def test_a_failed_release_after_a_rollback_is_retried() -> None:
    """When abort() cannot release its pending marks, the retry queue releases them once the backend answers, so readers stop bypassing the tags."""
    backend = FailingBackend()
    cache = AsyncCache(backend)
    queue = AsyncRetryQueue(cache, first_delay=3600)  # drained by the test
    manager = AsyncInvalidationManager(cache, failure_sink=queue)
    try:
        pending = await manager.begin(["a"])
        assert pending.marked
        backend.failing = True

        await manager.abort(pending)

        assert 1 == len(queue)
        backend.failing = False
        assert await cache.guard.probe()  # as the queue's worker does while the breaker is open
        assert await queue.drain()
        assert PENDING_VERSION != (await backend.tag_versions(["a"]))["a"]
        assert "loaded" == await cache.get_or_load("k", lambda: "loaded", tags=["a"])
        assert "loaded" == await cache.get("k", tags=["a"])
    finally:
        await manager.aclose()


async def test_a_retry_queue_dropped_without_closing_is_not_kept_alive_by_its_cache() -> None:
    """The cache wakes its retry queues on recovery but holds them weakly: a manager dropped without aclose() is collected."""
    cache = AsyncCache(AsyncMemoryBackend())
    manager = AsyncInvalidationManager(cache)
    queue = weakref.ref(manager.failure_sink)

    del manager
    gc.collect()

    assert None is queue()
