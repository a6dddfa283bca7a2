"""At least once across processes: a consumer SIGKILLed while handling an event.

Two consumer processes of one service share a Redis Streams consumer group; each wires
the invalidation handlers to its own cache client and manager, plus a *gate* handler that
reports which process is handling the event and then blocks until the parent lets it
go. The parent kills the first process to report, with SIGKILL, in the middle of its
handling; the event is then redelivered to the other process (XAUTOCLAIM after
``REDELIVER_AFTER``). What the invalidation did is checked in the cache's state, not by
counting handler calls: killed before invalidating, the entry is invalidated by the
survivor; killed after invalidating (but before acknowledging), an entry filled in
between survives the redelivery, so the invalidation took effect once.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import signal
import time
from typing import Any

import pytest
import redis

from freshcache import (
    Cache,
    Event,
    EventBus,
    EventTypes,
    InvalidationManager,
    invalidation_handlers,
)
from freshcache._sync.events.transports.redis_streams import RedisStreamsTransport

from ..rules import service_rules

SPAWN = multiprocessing.get_context("spawn")
REDELIVER_AFTER = 0.5
WAIT = 30.0


def _consumer(redis_url: str, namespace: str, name: str, gate_first: bool, parent: Any) -> None:
    """A child: one service process, consuming until it is killed.

    It talks to the parent over a pipe (a killed process can leave a multiprocessing
    Event or Queue locked; a pipe end just closes): "ready" once consuming, "handling"
    in its gate, and waits for "go" there.
    """
    cache = Cache.from_url(f"{redis_url}?namespace={namespace}")
    manager = InvalidationManager(cache, service_rules())
    bus = EventBus(
        RedisStreamsTransport.from_url(
            redis_url,
            service="web",
            namespace=namespace,
            consumer=name,
            redeliver_after=REDELIVER_AFTER,
        )
    )

    def gate(event: Event) -> None:
        parent.send("handling")
        assert "go" == parent.recv()

    if gate_first:
        bus.subscribe(EventTypes.USER_UPDATED, gate)
    invalidation_handlers(bus, manager, {EventTypes.USER_UPDATED: "user"})
    if not gate_first:
        bus.subscribe(EventTypes.USER_UPDATED, gate)
    bus.start()
    parent.send("ready")
    time.sleep(3600)  # the parent kills this process


def _wait_until_acknowledged(client: redis.Redis, stream: str) -> None:
    """Until the service's group has read the one event and has nothing pending (server state, polled)."""
    deadline = time.monotonic() + WAIT
    while True:
        [group] = client.xinfo_groups(stream)
        if group["entries-read"] == 1 and group["pending"] == 0:
            return
        assert time.monotonic() < deadline, f"never acknowledged: {group}"
        time.sleep(0.02)


def _kill_the_first_handler(
    redis_url: str, namespace: str, *, gate_first: bool, between: Any
) -> tuple[str, str]:
    """Publish one USER_UPDATED for user 1 and SIGKILL the consumer that handles it first.

    ``between()`` runs while that consumer is blocked in its gate. Returns the names of
    the killed consumer and of the one that handled the redelivery, once it acknowledged.
    """
    names = ["consumer-a", "consumer-b"]
    pipes = {name: SPAWN.Pipe() for name in names}
    processes = {
        name: SPAWN.Process(
            target=_consumer,
            args=(redis_url, namespace, name, gate_first, pipes[name][1]),
            daemon=True,
        )
        for name in names
    }
    to_child = {name: pipes[name][0] for name in names}
    client = redis.Redis.from_url(redis_url)
    publisher = EventBus(
        RedisStreamsTransport.from_url(redis_url, service="writer", namespace=namespace)
    )
    try:
        for process in processes.values():
            process.start()
        for name in names:
            assert to_child[name].poll(WAIT), f"{name} did not start"
            assert "ready" == to_child[name].recv()

        publisher.publish(Event(EventTypes.USER_UPDATED, {"id": 1}))
        [first] = _report_handling(list(to_child.values()), to_child)
        between()
        processes[first].kill()
        processes[first].join(10)
        assert -signal.SIGKILL == processes[first].exitcode
        [survivor] = [name for name in names if name != first]
        assert [survivor] == _report_handling([to_child[survivor]], to_child)
        to_child[survivor].send("go")
        _wait_until_acknowledged(client, f"{{{namespace}}}:events")
        assert not to_child[survivor].poll(REDELIVER_AFTER * 4), "the event was handled again"
        return first, survivor
    finally:
        for process in processes.values():
            process.kill()
            process.join(10)
        publisher.close()
        client.close()


def _report_handling(connections: list[Any], to_child: dict[str, Any]) -> list[str]:
    """The names of the children that report handling, among ``connections``, waiting for one."""
    ready = multiprocessing.connection.wait(connections, WAIT)
    assert ready, "no consumer handled the event"
    names = [name for name, connection in to_child.items() if connection in ready]
    for name in names:
        assert "handling" == to_child[name].recv()
    return names


@pytest.mark.slow
def test_killed_before_invalidating_the_other_process_invalidates(
    redis_url: str, namespace: str
) -> None:
    """A consumer killed while handling, before its invalidation, leaves the event to the other process, which invalidates."""
    cache = Cache.from_url(f"{redis_url}?namespace={namespace}")
    try:
        assert cache.set("user:1", "old", tags=["user:1"])

        killed, survivor = _kill_the_first_handler(
            redis_url, namespace, gate_first=True, between=lambda: None
        )

        assert killed != survivor
        assert None is cache.get("user:1", tags=["user:1"])
    finally:
        cache.close()


@pytest.mark.slow
def test_killed_after_invalidating_the_redelivery_changes_nothing(
    redis_url: str, namespace: str
) -> None:
    """A consumer killed after its invalidation but before acknowledging: the redelivery to the other process leaves an entry filled since then alone."""
    cache = Cache.from_url(f"{redis_url}?namespace={namespace}")
    try:
        assert cache.set("user:1", "old", tags=["user:1"])

        def refill() -> None:
            assert None is cache.get("user:1", tags=["user:1"])  # the killed process invalidated
            assert cache.set("user:1", "new", tags=["user:1"])

        killed, survivor = _kill_the_first_handler(
            redis_url, namespace, gate_first=False, between=refill
        )

        assert killed != survivor
        assert "new" == cache.get("user:1", tags=["user:1"])
    finally:
        cache.close()
