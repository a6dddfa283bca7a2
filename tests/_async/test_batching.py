"""Group commit: concurrent tag invalidations share backend operations, as tasks and as threads.

The cancellations (tasks only) are in tests/test_batching_cancel.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from freshcache import AsyncCache, AsyncMemoryBackend, BackendError
from freshcache._async.batching import AsyncTagBatcher

from ..concurrency import TIMEOUT, AsyncEvent, AsyncNursery, async_wait_until

CALLERS = 200


class GatedBackend(AsyncMemoryBackend):
    """The memory backend whose first invalidation waits at a gate the test opens, and a switch to fail them."""

    failing = False

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[str]] = []
        self.in_flight = AsyncEvent()
        self.gate = AsyncEvent()

    async def invalidate_tags(self, tags: Sequence[str]) -> None:
        self.calls.append(list(tags))
        if not self.in_flight.is_set():
            self.in_flight.set()
            assert await self.gate.wait(TIMEOUT)
        if self.failing:
            raise BackendError("server went away")
        await super().invalidate_tags(tags)


async def test_concurrent_invalidations_share_operations_and_all_apply() -> None:
    """Callers arriving while an invalidation is in flight all share the next backend operation, and each finds its entry gone once its own call returns."""
    backend = GatedBackend()
    cache = AsyncCache(backend)
    batcher = cache._batcher  # the cache's own: how many callers queued in it is the point
    for n in range(CALLERS):
        await cache.set(f"k{n}", n, tags=[f"t{n}"])

    async def invalidate(n: int) -> object:
        await cache.invalidate_tags([f"t{n}"])
        return await cache.get(f"k{n}")  # after the call returns, the entry must be gone

    async with AsyncNursery() as nursery:
        first = nursery.start_soon(invalidate, 0)
        assert await backend.in_flight.wait(TIMEOUT)
        rest = [nursery.start_soon(invalidate, n) for n in range(1, CALLERS)]
        await async_wait_until(lambda: CALLERS - 1 == batcher.waiting)
        backend.gate.set()

    assert [None] * CALLERS == [call.result() for call in [first, *rest]]
    assert [["t0"], [f"t{n}" for n in range(1, CALLERS)]] == backend.calls
    assert 2 == batcher.operations
    assert {} == await cache.get_many([f"k{n}" for n in range(CALLERS)])


async def test_a_lone_caller_goes_straight_through() -> None:
    """With nobody else waiting, each call is one backend operation of its own tags."""
    backend = GatedBackend()
    backend.gate.set()
    batcher = AsyncTagBatcher(backend)

    await batcher.invalidate(["a"])
    await batcher.invalidate(["b", "c"])

    assert [["a"], ["b", "c"]] == backend.calls


async def test_a_failed_operation_fails_every_caller_in_it() -> None:
    """When the shared operation fails, each caller in it gets the BackendError."""
    backend = GatedBackend()
    backend.failing = True
    batcher = AsyncTagBatcher(backend)

    async with AsyncNursery(errors_expected=True) as nursery:
        first = nursery.start_soon(batcher.invalidate, ["t0"])
        assert await backend.in_flight.wait(TIMEOUT)
        rest = [nursery.start_soon(batcher.invalidate, [f"t{n}"]) for n in range(1, 20)]
        await async_wait_until(lambda: 19 == batcher.waiting)
        backend.gate.set()

    for caller in [first, *rest]:
        with pytest.raises(BackendError, match="server went away"):
            caller.result()
    backend.failing = False
    await batcher.invalidate(["after"])  # the batcher is not stuck
    assert ["after"] == backend.calls[-1]
