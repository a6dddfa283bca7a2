"""Strict mode is linearizable per key, checked on a recorded history of real operations.

One writer per user raises its ``score`` 1, 2, 3... through ``AsyncBaseRepository.update``;
readers in this process and in three more OS processes ("spawn") read the users through
``AsyncBaseRepository.get``, on PostgreSQL and Redis, and one task per process reads the
rows straight from the database, as code that does not go through the cache would.
Every operation is recorded with its real-time interval (``time.monotonic_ns``:
CLOCK_MONOTONIC, one clock for every process on Linux) and its value, then the history
is checked per user, over the cache reads alone and over all reads together:

stale
    a read returns a value older than a write that completed before the read began;
future
    a read returns a value whose write began after the read ended;
non-monotonic
    a read that begins after another read ended returns an older value.

Between the commit and the invalidation each writer pauses a few milliseconds (through
``SessionInvalidation.on_committed``), as a slow link to Redis or a pause of the process
would: that is the window strict mode closes and commit mode leaves open. Commit mode
runs the same workload; its violations are reported (run pytest with ``-s``), not
asserted, since a given run may show none. Set ``FRESHCACHE_LINEARIZABILITY_REPORT`` to
a path to have the counts written there as JSON.

Why the database readers: through ``get`` alone commit mode rarely goes back, since
a key's lease lets one loader at a time read the database and fill, so the old entry is
what everybody reads until the invalidation. A reader that reaches the row by another
path (a query of its own, another cache key) sees the commit at once, and a cache read
after it can still return the old value: that is what the pending marks prevent.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session
from sqlalchemy.util import await_only

from freshcache.verification import KINDS, Read, Verdict, Write
from freshcache.verification import check_history as check

from ..databases import Database
from ..integrations.models import User
from ..integrations.stack import Settings, Stack

SPAWN = multiprocessing.get_context("spawn")

USERS = 4
READER_PROCESSES = 3
TASKS_PER_PROCESS = 8  # reading through the cache
DATABASE_TASKS_PER_PROCESS = 1  # reading the table, no cache
LOAD_SECONDS = 5.0
# The longest pause between a writer's commit and its invalidation.
COMMIT_TO_INVALIDATION = 0.004
STARTUP_TIMEOUT = 60.0

# (user id, start ns, end ns, score written or read)
Operation = tuple[int, int, int, int]


# The history check is freshcache verify's (freshcache.verification), on this file's tuples.


def check_history(writes: Sequence[Operation], reads: Sequence[Operation]) -> Verdict:
    return check(
        [Write(str(key), start, end, value) for key, start, end, value in writes],
        [Read(str(key), start, end, value) for key, start, end, value in reads],
    )


# The workload


@dataclass
class Reads:
    """One process's reads: through the cache, and straight from the database."""

    cache: list[Operation] = field(default_factory=list)
    database: list[Operation] = field(default_factory=list)


async def _read_load(stack: Stack, user_ids: Sequence[int], seconds: float, seed: int) -> Reads:
    deadline = time.monotonic() + seconds
    reads = Reads()

    async def through_cache(rng: random.Random) -> None:
        while time.monotonic() < deadline:
            user_id = rng.choice(user_ids)
            start = time.monotonic_ns()
            user = await stack.users.get(user_id)
            end = time.monotonic_ns()
            assert user is not None
            reads.cache.append((user_id, start, end, user.score))
            if rng.random() < 0.2:
                await asyncio.sleep(rng.uniform(0, 0.002))

    async def from_database(rng: random.Random) -> None:
        query = select(User.score).where(User.id == bindparam("user_id"))
        while time.monotonic() < deadline:
            user_id = rng.choice(user_ids)
            start = time.monotonic_ns()
            async with stack.engine.connect() as connection:
                score = (await connection.execute(query, {"user_id": user_id})).scalar_one()
            end = time.monotonic_ns()
            reads.database.append((user_id, start, end, score))
            await asyncio.sleep(rng.uniform(0, 0.002))

    await asyncio.gather(
        *(through_cache(random.Random(seed * 1000 + n)) for n in range(TASKS_PER_PROCESS)),
        *(
            from_database(random.Random(seed * 1000 + 500 + n))
            for n in range(DATABASE_TASKS_PER_PROCESS)
        ),
    )
    return reads


async def _write_load(stack: Stack, user_id: int, seconds: float, seed: int) -> list[Operation]:
    deadline = time.monotonic() + seconds
    rng = random.Random(seed)
    history: list[Operation] = []
    score = 0
    while time.monotonic() < deadline:
        score += 1
        start = time.monotonic_ns()
        updated = await stack.users.update(user_id, score=score)
        end = time.monotonic_ns()
        assert updated is not None
        assert score == updated.score
        history.append((user_id, start, end, score))
        await asyncio.sleep(rng.uniform(0, 0.003))
    return history


def _pause_after_commit(longest: float, seed: int) -> Callable[[Session], None]:
    """An ``on_committed`` hook that sleeps up to ``longest`` seconds without blocking the loop."""
    rng = random.Random(seed)

    def pause(session: Session) -> None:
        # The hooks run in SQLAlchemy's greenlet under an AsyncSession, where awaiting is allowed.
        await_only(asyncio.sleep(rng.uniform(0, longest)))

    return pause


def _reader_process(
    settings: Settings, user_ids: list[int], seconds: float, seed: int, start: Any, out: str
) -> None:
    """A child: warms up, waits at the start barrier, reads for ``seconds``, writes its reads to ``out``."""

    async def main() -> Reads:
        stack = Stack.build(settings)
        try:
            for user_id in user_ids:
                await stack.users.get(user_id)
            await asyncio.to_thread(start.wait, STARTUP_TIMEOUT)
            return await _read_load(stack, user_ids, seconds, seed)
        finally:
            await stack.aclose()

    reads = asyncio.run(main())
    Path(out).write_text(json.dumps({"cache": reads.cache, "database": reads.database}))


@dataclass
class Run:
    cache_only: Verdict
    all_reads: Verdict
    database_reads: int
    final_scores: dict[int, int]
    last_written: dict[int, int]
    outbox_pending: int
    metrics: dict[str, Any]


async def _run(settings: Settings, directory: Path) -> Run:
    """The workload on ``settings``: writers and readers here, readers in child processes."""
    stack = Stack.build(settings)
    processes: list[Any] = []
    try:
        await stack.create_tables()
        user_ids = [
            (await stack.users.add(email=f"u{n}@example.com", name=f"user {n}", score=0)).id
            for n in range(USERS)
        ]
        stack.invalidation.on_committed = _pause_after_commit(COMMIT_TO_INVALIDATION, seed=1)
        start = SPAWN.Barrier(READER_PROCESSES + 1)
        outs = [directory / f"{settings.mode}-reads-{n}.json" for n in range(READER_PROCESSES)]
        processes = [
            SPAWN.Process(
                target=_reader_process,
                args=(settings, user_ids, LOAD_SECONDS, n + 1, start, str(out)),
                daemon=True,
            )
            for n, out in enumerate(outs)
        ]
        for process in processes:
            process.start()
        for user_id in user_ids:
            await stack.users.get(user_id)
        await asyncio.to_thread(start.wait, STARTUP_TIMEOUT)
        here, *written = await asyncio.gather(
            _read_load(stack, user_ids, LOAD_SECONDS, seed=0),
            *(_write_load(stack, user_id, LOAD_SECONDS, seed=user_id) for user_id in user_ids),
        )
        for process in processes:
            await asyncio.to_thread(process.join, 30)
            assert 0 == process.exitcode
        cache_reads, database_reads = list(here.cache), list(here.database)
        for out in outs:
            recorded = json.loads(out.read_text())
            cache_reads.extend(tuple(read) for read in recorded["cache"])
            database_reads.extend(tuple(read) for read in recorded["database"])
        writes = [write for history in written for write in history]
        stack.invalidation.on_committed = None
        final_scores = {}
        for user_id in user_ids:
            user = await stack.users.get(user_id)
            assert user is not None
            final_scores[user_id] = user.score
        last_written = dict.fromkeys(user_ids, 0)
        for user_id, _, _, score in writes:
            last_written[user_id] = max(last_written[user_id], score)
        await stack.relay.run_once()
        return Run(
            check_history(writes, cache_reads),
            check_history(writes, cache_reads + database_reads),
            len(database_reads),
            final_scores,
            last_written,
            await stack.outbox_pending(),
            stack.cache.metrics.snapshot(),
        )
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
            process.join(5)
        await stack.aclose()


def _report(mode: str, run: Run) -> dict[str, Any]:
    report = {
        "mode": mode,
        "writes": run.cache_only.writes,
        "cache_reads": run.cache_only.reads,
        "database_reads": run.database_reads,
        "processes": READER_PROCESSES + 1,
        "cache_reader_tasks": (READER_PROCESSES + 1) * TASKS_PER_PROCESS,
        "database_reader_tasks": (READER_PROCESSES + 1) * DATABASE_TASKS_PER_PROCESS,
        "load_seconds": LOAD_SECONDS,
        "commit_to_invalidation_max_seconds": COMMIT_TO_INVALIDATION,
        "violations_among_cache_reads": run.cache_only.counts,
        "violations_among_all_reads": run.all_reads.counts,
        "examples": run.all_reads.examples,
        "writer_process_cache": {
            key: run.metrics[key] for key in ("hits", "misses", "pending_bypasses", "loads")
        },
    }
    print(f"\nlinearizability {mode}: {json.dumps(report)}")
    path = os.environ.get("FRESHCACHE_LINEARIZABILITY_REPORT")
    if path:
        target = Path(path)
        recorded = json.loads(target.read_text()) if target.exists() else {}
        recorded[mode] = report
        target.write_text(json.dumps(recorded, indent=2) + "\n")
    return report


def _settings(database: Database, redis_url: str, namespace: str, mode: str) -> Settings:
    return Settings.of(database, f"{redis_url}?namespace={namespace}", mode=mode, pool_size=6)


def _check_volume(run: Run) -> None:
    # Bounds far below a normal run's, so that a busy machine does not fail the test;
    # they only keep it from passing on a history too small to mean anything.
    assert run.cache_only.reads > 1000
    assert run.database_reads > 100
    assert run.cache_only.writes > 40


@pytest.mark.slow
async def test_strict_mode_reads_never_go_stale_or_backwards(
    postgres: Database, redis_url: str, namespace: str, tmp_path: Path
) -> None:
    """In strict mode, across four processes, no read (cache or database) is stale, from the future or backwards."""
    run = await _run(_settings(postgres, redis_url, namespace, "strict"), tmp_path)
    _report("strict", run)
    assert dict.fromkeys(KINDS, 0) == run.all_reads.counts, run.all_reads.examples
    assert run.last_written == run.final_scores
    assert 0 == run.outbox_pending
    _check_volume(run)


@pytest.mark.slow
async def test_commit_mode_is_measured_on_the_same_workload(
    postgres: Database, redis_url: str, namespace: str, tmp_path: Path
) -> None:
    """Commit mode runs the same workload; its violations are counted and reported, not asserted."""
    run = await _run(_settings(postgres, redis_url, namespace, "commit"), tmp_path)
    report = _report("commit", run)
    assert set(KINDS) == set(report["violations_among_all_reads"])
    # Read-after-write is promised in both modes: nothing stale once a write has returned.
    assert 0 == run.all_reads.counts["stale"], run.all_reads.examples
    assert 0 == run.all_reads.counts["future"], run.all_reads.examples
    assert run.last_written == run.final_scores
    assert 0 == run.outbox_pending
    _check_volume(run)
