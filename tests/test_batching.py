"""Group commit: concurrent tag invalidations share backend operations."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from freshcache import AsyncCache, AsyncMemoryBackend, BackendError, Cache, MemoryBackend
from freshcache._async.batching import AsyncTagBatcher


class SlowBackend(AsyncMemoryBackend):
    """The memory backend with a round trip of 10 ms on invalidations, and a switch to fail them."""

    failing = False

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[Sequence[str]] = []

    async def invalidate_tags(self, tags: Sequence[str]) -> None:
        self.calls.append(tags)
        await asyncio.sleep(0.01)
        if self.failing:
            raise BackendError("server went away")
        await super().invalidate_tags(tags)


async def test_concurrent_invalidations_share_operations_and_all_apply() -> None:
    """200 concurrent invalidations take far fewer backend calls, and every tag is applied."""
    backend = SlowBackend()
    cache = AsyncCache(backend)
    for n in range(200):
        await cache.set(f"k{n}", n, tags=[f"t{n}"])

    await asyncio.gather(*[cache.invalidate_tags([f"t{n}"]) for n in range(200)])

    assert len(backend.calls) <= 3  # the first alone, then everything that queued behind it
    assert {f"t{n}" for n in range(200)} == {tag for call in backend.calls for tag in call}
    assert {} == await cache.get_many([f"k{n}" for n in range(200)])


async def test_a_lone_caller_goes_straight_through() -> None:
    """With nobody else waiting, each call is one backend operation of its own tags."""
    backend = SlowBackend()
    batcher = AsyncTagBatcher(backend)

    await batcher.invalidate(["a"])
    await batcher.invalidate(["b", "c"])

    assert [["a"], ["b", "c"]] == [list(call) for call in backend.calls]


async def test_a_failed_operation_fails_every_caller_in_it() -> None:
    """When the shared operation fails, each caller in it gets the BackendError."""
    backend = SlowBackend()
    backend.failing = True
    batcher = AsyncTagBatcher(backend)

    results = await asyncio.gather(
        *[batcher.invalidate([f"t{n}"]) for n in range(20)], return_exceptions=True
    )

    assert all(isinstance(result, BackendError) for result in results)
    backend.failing = False
    await batcher.invalidate(["after"])  # the batcher is not stuck
    assert ["after"] == list(backend.calls[-1])


async def test_a_cancelled_leader_hands_over() -> None:
    """Cancelling the caller whose operation is in flight leaves the queue behind it running, and every follower returns."""
    backend = SlowBackend()
    batcher = AsyncTagBatcher(backend)
    leader = asyncio.create_task(batcher.invalidate(["first"]))
    await asyncio.sleep(0.001)  # the leader's operation is in flight
    followers = [asyncio.create_task(batcher.invalidate([f"t{n}"])) for n in range(5)]
    await asyncio.sleep(0)
    leader.cancel()

    results = await asyncio.wait_for(asyncio.gather(*followers, return_exceptions=True), 5)

    assert [None] * 5 == results
    assert {f"t{n}" for n in range(5)} <= {tag for call in backend.calls for tag in call}
    with pytest.raises(asyncio.CancelledError):
        await leader


def test_threads_share_operations() -> None:
    """Sync callers on many threads share operations too, and each returns after its tags are applied."""

    class SlowSyncBackend(MemoryBackend):
        calls = 0
        lock = threading.Lock()

        def invalidate_tags(self, tags: Sequence[str]) -> None:
            with self.lock:
                type(self).calls += 1
            threading.Event().wait(0.01)
            super().invalidate_tags(tags)

    backend = SlowSyncBackend()
    cache = Cache(backend)
    for n in range(64):
        cache.set(f"k{n}", n, tags=[f"t{n}"])
    barrier = threading.Barrier(64)

    def invalidate(n: int) -> object:
        barrier.wait(5)
        cache.invalidate_tags([f"t{n}"])
        return cache.get(f"k{n}")  # after the call returns, the entry must be gone

    with ThreadPoolExecutor(64) as pool:
        after = list(pool.map(invalidate, range(64)))

    assert [None] * 64 == after
    assert SlowSyncBackend.calls < 64


async def test_a_cancelled_waiter_does_not_stall_the_queue() -> None:
    """A caller cancelled while queued (or just promoted) is taken out: the others and every later call complete."""
    backend = SlowBackend()
    batcher = AsyncTagBatcher(backend)
    leader = asyncio.create_task(batcher.invalidate(["a"]))
    await asyncio.sleep(0.001)  # the leader's operation is in flight
    doomed = asyncio.create_task(batcher.invalidate(["b"]))
    survivor = asyncio.create_task(batcher.invalidate(["c"]))
    await asyncio.sleep(0)
    doomed.cancel()

    await asyncio.wait_for(asyncio.gather(leader, survivor), 5)
    await asyncio.wait_for(batcher.invalidate(["d"]), 5)

    assert {"a", "c", "d"} <= {tag for call in backend.calls for tag in call}
    with pytest.raises(asyncio.CancelledError):
        await doomed


async def test_a_waiter_cancelled_right_after_promotion_hands_over() -> None:
    """A promoted waiter cancelled before or during its flush never stalls the queue: the rest finish (applied, or told to retry) and later calls work."""
    backend = SlowBackend()
    batcher = AsyncTagBatcher(backend)
    leader = asyncio.create_task(batcher.invalidate(["a"]))
    await asyncio.sleep(0.001)
    promoted = asyncio.create_task(batcher.invalidate(["b"]))
    follower = asyncio.create_task(batcher.invalidate(["c"]))
    await asyncio.sleep(0)
    await asyncio.wait_for(leader, 5)  # hands over to `promoted`, which has not run yet
    promoted.cancel()

    outcome = await asyncio.wait_for(asyncio.gather(follower, return_exceptions=True), 5)
    await asyncio.wait_for(batcher.invalidate(["d"]), 5)

    assert outcome[0] is None or isinstance(outcome[0], BackendError)  # applied, or told to retry
    assert ["d"] == list(backend.calls[-1])
