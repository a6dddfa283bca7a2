"""Redis down during writes: every write succeeds, the outbox keeps what the cache missed.

The stack runs on a Redis server of the test's own (``private_redis``), persistent, so that
after ``stop`` and ``start`` the old entries are back, as after a network partition:
exactly the case where the missed invalidations matter. While the server is down, writes
commit and their outbox rows stay; reads come from the database. Once it is back, the
relay applies the rows and nothing stale is served any more.
"""

from __future__ import annotations

import asyncio
import time

import pytest
import redis

from freshcache import AsyncRetryQueue

from ..databases import Database
from ..integrations.stack import Settings, Stack
from ..redis_server import RedisServer

USERS = 4
ROUNDS = 2  # updates per user while Redis is down
GRACE = 0.2
REPAIR_TIMEOUT = 30.0  # the circuit breaker's cooldown has grown during the outage


async def _names(stack: Stack, user_ids: list[int]) -> list[str]:
    names = []
    for user_id in user_ids:
        user = await stack.users.get(user_id)
        assert user is not None
        names.append(user.name)
    return names


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["strict", "commit"])
async def test_writes_succeed_while_redis_is_down_and_the_outbox_repairs_the_cache(
    postgres: Database, private_redis: RedisServer, mode: str
) -> None:
    """With Redis down every write succeeds and reads the database; once it is back the relay drains the outbox and nothing stale is read."""
    settings = Settings.of(
        postgres,
        f"{private_redis.url}?namespace=outage",
        mode=mode,
        grace=GRACE,
        relay_interval=3600.0,  # relayed only when the test says so
    )
    stack = Stack.build(settings)
    try:
        await stack.create_tables()
        user_ids = [
            (await stack.users.add(email=f"u{n}@example.com", name="old", score=0)).id
            for n in range(USERS)
        ]
        await stack.relay.delete_applied()
        assert 0 == await stack.outbox_pending()
        assert ["old"] * USERS == await _names(stack, user_ids)
        hits = stack.cache.metrics.hits
        assert ["old"] * USERS == await _names(stack, user_ids)
        assert hits + USERS == stack.cache.metrics.hits  # cached, and persisted by Redis

        private_redis.stop()
        errors = stack.cache.metrics.backend_errors
        newest = {}
        for round_ in range(ROUNDS):
            for user_id in user_ids:
                newest[user_id] = f"new {round_}"
                updated = await stack.users.update(user_id, name=newest[user_id])
                assert updated is not None  # no exception: the write went through
        expected = [newest[user_id] for user_id in user_ids]

        assert USERS * ROUNDS == await stack.outbox_pending()
        assert expected == await _names(stack, user_ids)  # from the database
        assert stack.cache.metrics.backend_errors > errors
        assert USERS * ROUNDS == stack.manager.metrics.failed_invalidations
        # The relay cannot apply anything yet, and keeps every row.
        await asyncio.sleep(GRACE)
        await stack.relay.run_once()
        assert USERS * ROUNDS == await stack.outbox_pending()

        private_redis.start()
        client = redis.Redis.from_url(private_redis.url)
        try:
            # The old entries are back, as after a partition: the cache must not serve them.
            assert USERS == len(list(client.scan_iter(match="{outage}:e:*")))
        finally:
            client.close()

        deadline = time.monotonic() + REPAIR_TIMEOUT
        while await stack.outbox_pending():
            assert time.monotonic() < deadline, "the relay never drained the outbox"
            await stack.relay.run_once()
            await asyncio.sleep(0.1)
        assert USERS * ROUNDS == stack.relay.relayed_rows
        assert expected == await _names(stack, user_ids)
        # The manager's own retry queue empties too (applying it again is harmless).
        queue = stack.manager.failure_sink
        assert isinstance(queue, AsyncRetryQueue)
        assert await queue.drain()
        assert 0 == len(queue)

        # And the cache serves hits again, with the new values.
        while True:
            hits = stack.cache.metrics.hits
            assert expected == await _names(stack, user_ids)
            if hits + USERS == stack.cache.metrics.hits:
                break
            assert time.monotonic() < deadline, "the cache never served hits again"
            await asyncio.sleep(0.1)
    finally:
        await stack.aclose()
