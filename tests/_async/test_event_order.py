"""Events published concurrently on one bus: order is kept per publisher, as tasks and as threads."""

from __future__ import annotations

from freshcache import AsyncEventBus
from freshcache import Event as DomainEvent  # apart from the shim's Event, once generated
from freshcache import EventTypes as T

from ..concurrency import TIMEOUT, AsyncEvent, AsyncNursery, async_current_name, async_pause

PUBLISHERS = 5
EVENTS = 50


async def test_order_is_kept_per_publisher() -> None:
    """Concurrent publishers each see their events handled in the order they published them, in their own task or thread."""
    bus = AsyncEventBus()
    seen: dict[int, list[tuple[int, str]]] = {}
    publishers: dict[int, str] = {}
    start = AsyncEvent()  # releases the publishers together

    @bus.subscribe(T.USER_UPDATED)
    async def record(event: DomainEvent) -> None:
        await async_pause()  # let the other publishers run, so that they interleave
        seen.setdefault(event.data["id"], []).append((event.data["n"], async_current_name()))

    async def publisher(entity: int) -> None:
        publishers[entity] = async_current_name()
        assert await start.wait(TIMEOUT)
        for n in range(EVENTS):
            await bus.publish(DomainEvent(T.USER_UPDATED, {"id": entity, "n": n}))

    async with AsyncNursery() as nursery:
        for entity in range(PUBLISHERS):
            nursery.start_soon(publisher, entity)
        start.set()

    assert PUBLISHERS == len(set(publishers.values()))
    assert {
        entity: [(n, publishers[entity]) for n in range(EVENTS)] for entity in range(PUBLISHERS)
    } == seen
