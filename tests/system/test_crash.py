"""A writer killed between its commit and its invalidation: the outbox repairs what it left undone.

A child process updates a user through the repository; ``SessionInvalidation.on_committed``
(called after the database commit, before the invalidation) tells the parent and sleeps,
and the parent kills it with SIGKILL there. The row is committed with the new value and
its outbox row with it; the cache was never told. In commit mode the cache serves the old
value until the relay applies the outbox row. In strict mode the dead writer's pending
mark holds the tag until its TTL, so readers bypass the cache meanwhile and are never
stale; the relay then finishes the invalidation.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import signal
import time
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..databases import Database
from ..integrations.models import User
from ..integrations.stack import Settings, Stack

SPAWN = multiprocessing.get_context("spawn")

PENDING_TTL = 2.0
GRACE = 0.2
# The relay runs only when a test calls it: a background run could repair the cache
# before the test has looked at what the crash left.
NO_BACKGROUND_RELAY = 3600.0


def _update_and_die_after_commit(
    settings: Settings, user_id: int, name: str, committed: Any
) -> None:
    """A child: updates the user; after the commit it signals ``committed`` and sleeps, to be killed."""

    def stop_here(session: Session) -> None:
        committed.set()
        time.sleep(60)  # never returns on its own: the parent kills the process here

    async def main() -> None:
        stack = Stack.build(settings)
        stack.invalidation.on_committed = stop_here
        await stack.users.update(user_id, name=name)

    asyncio.run(main())


async def _committed_name(stack: Stack, user_id: int) -> str:
    async with stack.engine.connect() as connection:
        name: str = (
            await connection.execute(select(User.name).where(User.id == user_id))
        ).scalar_one()
        return name


async def _read_name(stack: Stack, user_id: int) -> str:
    user = await stack.users.get(user_id)
    assert user is not None
    return user.name


async def _kill_writer_after_commit(stack: Stack, user_id: int, name: str) -> float:
    """Runs the writer in a child and SIGKILLs it after its commit; when the commit was seen."""
    committed = SPAWN.Event()
    writer = SPAWN.Process(
        target=_update_and_die_after_commit,
        args=(stack.settings, user_id, name, committed),
        daemon=True,
    )
    writer.start()
    deadline = time.monotonic() + 60
    try:
        while not await asyncio.to_thread(committed.wait, 0.1):
            assert writer.is_alive(), f"the writer exited ({writer.exitcode}) before its commit"
            assert time.monotonic() < deadline, "the writer never committed"
        seen = time.monotonic()
    finally:
        writer.kill()
        await asyncio.to_thread(writer.join, 10)
    assert -signal.SIGKILL == writer.exitcode  # nothing after the commit ran
    return seen


async def _cache_a_user(stack: Stack) -> int:
    """A user named "before", read twice: the second read is a hit."""
    await stack.create_tables()
    user = await stack.users.add(email="ada@example.com", name="before", score=1)
    assert 1 == await stack.relay.delete_applied()  # the insert's own outbox row, applied
    assert 0 == await stack.outbox_pending()
    assert "before" == await _read_name(stack, user.id)  # loaded and filled
    hits = stack.cache.metrics.hits
    assert "before" == await _read_name(stack, user.id)
    assert hits + 1 == stack.cache.metrics.hits  # the old value is in Redis
    return user.id


@pytest.mark.slow
async def test_commit_mode_writer_killed_after_commit_is_repaired_by_the_relay(
    postgres: Database, redis_url: str, namespace: str
) -> None:
    """In commit mode the old value is served until the relay applies the dead writer's outbox row; then never again."""
    settings = Settings.of(
        postgres,
        f"{redis_url}?namespace={namespace}",
        mode="commit",
        grace=GRACE,
        relay_interval=NO_BACKGROUND_RELAY,
    )
    stack = Stack.build(settings)
    try:
        user_id = await _cache_a_user(stack)
        await _kill_writer_after_commit(stack, user_id, "after")

        assert "after" == await _committed_name(stack, user_id)
        assert 1 == await stack.outbox_pending()
        # The window the outbox exists for: the cache was never told.
        assert "before" == await _read_name(stack, user_id)

        await asyncio.sleep(GRACE)
        assert 1 == await stack.relay.run_once()

        assert 0 == await stack.outbox_pending()
        assert 1 == (await stack.relay.stats())["relayed_rows"]
        assert "after" == await _read_name(stack, user_id)
        hits = stack.cache.metrics.hits
        assert "after" == await _read_name(stack, user_id)
        assert hits + 1 == stack.cache.metrics.hits  # cached again, with the new value
    finally:
        await stack.aclose()


@pytest.mark.slow
async def test_strict_mode_writer_killed_after_commit_never_serves_the_old_value(
    postgres: Database, redis_url: str, namespace: str
) -> None:
    """In strict mode the dead writer's pending mark makes readers bypass the cache until it expires, and the relay empties the outbox."""
    settings = Settings.of(
        postgres,
        f"{redis_url}?namespace={namespace}",
        mode="strict",
        pending_ttl=PENDING_TTL,
        grace=GRACE,
        relay_interval=NO_BACKGROUND_RELAY,
    )
    stack = Stack.build(settings)
    try:
        user_id = await _cache_a_user(stack)
        committed = await _kill_writer_after_commit(stack, user_id, "after")

        assert "after" == await _committed_name(stack, user_id)
        assert 1 == await stack.outbox_pending()
        bypasses = stack.cache.metrics.pending_bypasses
        assert "after" == await _read_name(stack, user_id)
        assert "after" == await _read_name(stack, user_id)
        assert bypasses + 2 == stack.cache.metrics.pending_bypasses  # held by the dead writer

        await asyncio.sleep(GRACE)
        assert 1 == await stack.relay.run_once()  # while the mark is still held
        assert 0 == await stack.outbox_pending()
        assert 1 == (await stack.relay.stats())["relayed_rows"]

        # Until the mark expires every read bypasses the cache, and none is stale. (The
        # mark was set just before the commit; half a second covers the gap.)
        names = []
        while time.monotonic() - committed < PENDING_TTL - 0.5:
            names.append(await _read_name(stack, user_id))
            await asyncio.sleep(0.05)
        assert ["after"] * len(names) == names
        assert bypasses + 2 + len(names) == stack.cache.metrics.pending_bypasses

        # Then the mark is gone and the cache fills and serves the new value again.
        deadline = time.monotonic() + PENDING_TTL + 5
        sets = stack.cache.metrics.sets
        while stack.cache.metrics.sets == sets:
            assert time.monotonic() < deadline, "the dead writer's mark never expired"
            assert "after" == await _read_name(stack, user_id)
            await asyncio.sleep(0.05)
        hits = stack.cache.metrics.hits
        assert "after" == await _read_name(stack, user_id)
        assert hits + 1 == stack.cache.metrics.hits
    finally:
        await stack.aclose()
