"""Group commit with callers cancelled (a request timeout): the queue never stalls.

Cancellation exists for tasks only, so these tests have no thread twin; the rest of group
commit is written once in tests/_async/test_batching.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from freshcache import AsyncMemoryBackend, BackendError
from freshcache._async.batching import AsyncTagBatcher


class GatedBackend(AsyncMemoryBackend):
    """The memory backend whose first invalidation waits at a gate the test opens."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[str]] = []
        self.in_flight = asyncio.Event()
        self.gate = asyncio.Event()

    async def invalidate_tags(self, tags: Sequence[str]) -> None:
        self.calls.append(list(tags))
        if not self.in_flight.is_set():
            self.in_flight.set()
            await self.gate.wait()
        await super().invalidate_tags(tags)


async def test_a_cancelled_leader_hands_over() -> None:
    """Cancelling the caller whose operation is in flight leaves the queue behind it running, and every follower returns."""
    backend = GatedBackend()
    batcher = AsyncTagBatcher(backend)
    leader = asyncio.create_task(batcher.invalidate(["first"]))
    await asyncio.wait_for(backend.in_flight.wait(), 5)  # the leader's operation is in flight
    followers = [asyncio.create_task(batcher.invalidate([f"t{n}"])) for n in range(5)]
    await asyncio.sleep(0)  # a yield, not a wait: each follower runs up to its place in the queue
    leader.cancel()

    results = await asyncio.wait_for(asyncio.gather(*followers, return_exceptions=True), 5)

    assert [None] * 5 == results
    assert {f"t{n}" for n in range(5)} <= {tag for call in backend.calls for tag in call}
    with pytest.raises(asyncio.CancelledError):
        await leader


async def test_a_lone_caller_cancelled_mid_operation_has_its_tags_sent_again() -> None:
    """A caller alone in the batcher, cancelled before its operation returned, leaves its tags queued: the next call sends them with its own."""
    backend = GatedBackend()
    batcher = AsyncTagBatcher(backend)
    lone = asyncio.create_task(batcher.invalidate(["first"]))
    await asyncio.wait_for(backend.in_flight.wait(), 5)
    lone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await lone

    await asyncio.wait_for(batcher.invalidate(["next"]), 5)

    assert [["first"], ["first", "next"]] == backend.calls


async def test_a_cancelled_waiter_does_not_stall_the_queue() -> None:
    """A caller cancelled while queued (or just promoted) is taken out: the others and every later call complete."""
    backend = GatedBackend()
    batcher = AsyncTagBatcher(backend)
    leader = asyncio.create_task(batcher.invalidate(["a"]))
    await asyncio.wait_for(backend.in_flight.wait(), 5)  # the leader's operation is in flight
    doomed = asyncio.create_task(batcher.invalidate(["b"]))
    survivor = asyncio.create_task(batcher.invalidate(["c"]))
    await asyncio.sleep(0)  # a yield, not a wait: both run up to their place in the queue
    doomed.cancel()
    backend.gate.set()

    await asyncio.wait_for(asyncio.gather(leader, survivor), 5)
    await asyncio.wait_for(batcher.invalidate(["d"]), 5)

    assert {"a", "c", "d"} <= {tag for call in backend.calls for tag in call}
    with pytest.raises(asyncio.CancelledError):
        await doomed


async def test_a_waiter_cancelled_right_after_promotion_hands_over() -> None:
    """A promoted waiter cancelled before or during its flush never stalls the queue: the rest finish (applied, or told to retry) and later calls work."""
    backend = GatedBackend()
    batcher = AsyncTagBatcher(backend)
    leader = asyncio.create_task(batcher.invalidate(["a"]))
    await asyncio.wait_for(backend.in_flight.wait(), 5)
    promoted = asyncio.create_task(batcher.invalidate(["b"]))
    follower = asyncio.create_task(batcher.invalidate(["c"]))
    await asyncio.sleep(0)  # a yield, not a wait: both run up to their place in the queue
    assert 2 == batcher.waiting
    backend.gate.set()
    await asyncio.wait_for(leader, 5)  # hands over to `promoted`, which has not run yet
    promoted.cancel()

    outcome = await asyncio.wait_for(asyncio.gather(follower, return_exceptions=True), 5)
    await asyncio.wait_for(batcher.invalidate(["d"]), 5)

    assert outcome[0] is None or isinstance(outcome[0], BackendError)  # applied, or told to retry
    assert ["d"] == list(backend.calls[-1])
