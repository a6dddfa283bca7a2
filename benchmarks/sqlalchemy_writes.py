"""Suite ``sqlalchemy``: what freshcache adds to a write on PostgreSQL, and how fast the relay drains.

Update latency: one caller changes one challenge's title through the repository's
``update`` (a session, ``SELECT ... FOR UPDATE``, ``UPDATE``, ``COMMIT``), with plain
sessions (the reference: SQLAlchemy alone) and with freshcache's session hooks in commit
mode and in strict mode. Both modes run with the cache on Redis and the outbox on: the
transaction inserts its outbox row, and after the commit the change's four tags
(``challenge:{id}``, ``challenge``, ``user:{user_id}:challenges``, ``user:{user_id}``) get
new versions; strict mode also marks them pending before the commit. Each batch ends
with the relay's batched ``DELETE`` of its applied outbox rows, inside the timing.

Three more rows of the asyncio table are floors, no cache library in them: the plain
update with an outbox row of the same shape inserted in its transaction (through the
same Core ``INSERT`` on the session's connection, as the hooks do; or on the driver's
cursor, compiled once, the least a client can spend on the row), and the first plus one
raw redis-py ``DEL`` of the change's four tag keys after the commit: the least any
cache can do that keeps both the outbox and read-after-write, commit mode's floor.

Relay drain: ``outbox_rows`` rows, aged past the grace period as if their process had
died after committing, are inserted (untimed), and ``AsyncOutboxRelay.run_once()`` is
timed until the outbox is empty: claim 1,000 rows, invalidate their tags in one
operation, delete them, commit. The reference is the same claims and deletes without
the invalidation: the relay's SQL alone.

Everything lives in a PostgreSQL schema of the run's own, dropped at the end.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import AsyncExitStack, ExitStack, contextmanager
from typing import Any

import redis.asyncio
from sqlalchemy import (
    Engine,
    MetaData,
    Table,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, sessionmaker

from benchmarks import timing
from benchmarks.lineup import Lineup
from benchmarks.settings import Settings
from benchmarks.tables import Table as ResultTable
from benchmarks.tables import at_least_per_second, at_most
from benchmarks.timing import AsyncLoop, Samples, SyncLoop, measure, measure_async, rotated
from freshcache import AsyncCache, AsyncInvalidationManager, Cache, InvalidationManager
from freshcache.integrations.sqlalchemy import (
    AsyncBaseRepository,
    AsyncOutboxRelay,
    BaseRepository,
    OutboxRelay,
    SessionInvalidation,
    outbox_table,
    rules_from_models,
)
from freshcache.integrations.sqlalchemy._outbox import outbox_row
from tests.integrations.models import MODELS, Base, Challenge, User

REFERENCE = "SQLAlchemy alone, no cache"
COMMIT = "freshcache commit mode"
STRICT = "freshcache strict mode"
STRICT_GOAL = at_most(1.3)
COMMIT_GOAL = at_most(1.15)
OUTBOX_FLOOR = "floor: SQLAlchemy + the outbox INSERT, no cache"
DRIVER_FLOOR = "floor: SQLAlchemy + the outbox INSERT on the driver's cursor, no cache"
COMMIT_FLOOR = "floor: SQLAlchemy + the outbox INSERT + one raw DEL of the tags"
RELAY_SQL = "the relay's SQL alone: claim 1,000, delete, commit"
RELAY = "freshcache AsyncOutboxRelay.run_once()"
RELAY_GOAL = at_least_per_second(5_000)
# The change's four tags, as the hooks give them (the floors' outbox rows carry the same).
OUTBOX_TAGS = ["challenge:1", "challenge", "user:1:challenges", "user:1"]
# The relay's loop never wakes during a run: each batch deletes its own applied rows.
IDLE = 3600.0


class _AsyncChallenges(AsyncBaseRepository[Challenge]):
    model = Challenge


class _Challenges(BaseRepository[Challenge]):
    model = Challenge


def run(settings: Settings) -> list[ResultTable]:
    with _schema(settings.database_url) as connect_args:
        engine = create_engine(settings.database_url, connect_args=connect_args)
        try:
            challenge_id = _create_tables(engine)
            tables = asyncio.run(_async_tables(settings, connect_args, challenge_id))
            tables.insert(1, _sync_table(settings, engine, challenge_id))
        finally:
            engine.dispose()
    return tables


@contextmanager
def _schema(database_url: str) -> Iterator[dict[str, Any]]:
    """A schema of the run's own, dropped afterwards; yields the engines' ``connect_args``."""
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(database_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'create schema "{schema}"'))
        try:
            yield {"options": f"-csearch_path={schema}"}
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'drop schema "{schema}" cascade'))
    finally:
        admin.dispose()


def _outbox() -> Table:
    # On metadata of its own: the test domain's metadata stays as the tests declare it.
    return outbox_table(MetaData())


def _create_tables(engine: Engine) -> int:
    Base.metadata.create_all(engine)
    _outbox().metadata.create_all(engine)
    with engine.begin() as connection:
        user_id = connection.execute(
            insert(User).values(email="ada@example.org", name="Ada").returning(User.id)
        ).scalar_one()
        return int(
            connection.execute(
                insert(Challenge).values(user_id=user_id, title="t").returning(Challenge.id)
            ).scalar_one()
        )


def _update_table(results: dict[str, Samples], lineup: Lineup[Any], flavour: str) -> ResultTable:
    return lineup.table(
        results,
        suite="sqlalchemy",
        title=f"Single-row update on PostgreSQL, {flavour}: median latency, one caller",
        reference=REFERENCE,
        goal="with the cache on Redis and the outbox on, strict mode costs at most 1.3x the "
        "same update with SQLAlchemy alone, commit mode at most 1.15x."
        + ("" if flavour == "asyncio" else " Shown for comparison: the goal is the async one."),
    )


# asyncio


async def _async_tables(
    settings: Settings, connect_args: dict[str, Any], challenge_id: int
) -> list[ResultTable]:
    async with AsyncExitStack() as stack:
        engine = create_async_engine(settings.database_url, connect_args=connect_args)
        stack.push_async_callback(engine.dispose)
        cache = AsyncCache.from_url(settings.redis_url, namespace=settings.namespace)
        stack.push_async_callback(cache.aclose)
        stack.push_async_callback(cache.clear)
        manager = AsyncInvalidationManager(cache, rules_from_models(MODELS))
        stack.push_async_callback(manager.aclose)
        outbox = _outbox()
        relay = AsyncOutboxRelay(engine, manager, outbox, interval=IDLE)
        stack.push_async_callback(relay.aclose)

        titles = itertools.count()
        lineup: Lineup[AsyncLoop] = Lineup()
        for mode in (None, "commit", "strict"):
            sessions = async_sessionmaker(engine, expire_on_commit=False)
            if mode is not None:
                SessionInvalidation(manager, mode=mode, outbox=outbox, relay=relay).install(
                    sessions
                )
            repository = _AsyncChallenges(sessions, cache)
            if mode is not None:
                await _check_async_invalidates(repository, challenge_id)

            async def updates(ops: int, repository: _AsyncChallenges = repository) -> None:
                update = repository.update
                for _ in range(ops):
                    await update(challenge_id, title=f"title {next(titles)}")
                await relay.delete_applied()

            name = {None: REFERENCE, "commit": COMMIT, "strict": STRICT}[mode]
            goals = {"strict": STRICT_GOAL, "commit": COMMIT_GOAL}
            lineup.add(name, updates, goals.get(mode or ""))

        raw = redis.asyncio.Redis.from_url(settings.redis_url)
        stack.push_async_callback(raw.aclose)
        floors = (
            (OUTBOX_FLOOR, False, None),
            (DRIVER_FLOOR, True, None),
            (COMMIT_FLOOR, False, raw),
        )
        for name, on_cursor, redis_client in floors:
            floor = _async_floor(
                engine, cache, outbox, challenge_id, titles, on_cursor=on_cursor, raw=redis_client
            )
            lineup.add(name, floor)

        results = await measure_async(lineup.loops, rounds=settings.rounds, ops=settings.updates)
        _check_manager(manager.metrics.failed_invalidations, manager.snapshot())
        async with engine.connect() as connection:
            left = (await connection.execute(select(func.count()).select_from(outbox))).scalar()
        if left:
            raise RuntimeError(f"sqlalchemy suite: {left} outbox rows were never deleted")
        updates_table = _update_table(results, lineup, "asyncio")
        if timing.counting is not None:  # the relay's drain is not counted (see instructions)
            return [updates_table]
        relay_table = await _relay_table(settings, engine, manager, outbox)
    return [updates_table, relay_table]


def _async_floor(
    engine: AsyncEngine,
    cache: AsyncCache,
    outbox: Table,
    challenge_id: int,
    titles: Iterator[int],
    *,
    on_cursor: bool,
    raw: redis.asyncio.Redis | None,
) -> AsyncLoop:
    """The reference's update with the outbox row written in its transaction and, given ``raw``, one DEL after.

    ``on_cursor``: the row goes through the DBAPI connection's cursor, with the INSERT
    compiled once, rather than through Core's execution on the session's connection.
    """

    class FloorSession(Session):
        pass

    sessions = async_sessionmaker(engine, expire_on_commit=False, sync_session_class=FloorSession)
    repository = _AsyncChallenges(sessions, cache)
    prefix = "floor:"

    compiled = insert(outbox).compile(dialect=engine.dialect)

    @event.listens_for(FloorSession, "before_commit")
    def write_outbox_row(session: Session) -> None:
        row = outbox_row(OUTBOX_TAGS, ["challenge"], source="floor")
        if not on_cursor:
            session.connection().execute(insert(outbox), row)
            return
        cursor = session.connection().connection.cursor()
        try:
            cursor.execute(compiled.string, {name: row[name] for name in compiled.params})
        finally:
            cursor.close()

    keys = [prefix + tag for tag in OUTBOX_TAGS]
    clear = delete(outbox).where(outbox.c.source == "floor")

    async def updates(ops: int) -> None:
        update = repository.update
        for _ in range(ops):
            await update(challenge_id, title=f"title {next(titles)}")
            if raw is not None:
                await raw.delete(*keys)
        async with engine.begin() as connection:  # as the relay's batched delete
            await connection.execute(clear)

    return updates


async def _check_async_invalidates(repository: _AsyncChallenges, challenge_id: int) -> None:
    """Before timing: a cached read sees the update made through the hooked sessions."""
    await repository.get(challenge_id)
    await repository.update(challenge_id, title="checked")
    found = await repository.get(challenge_id)
    if found is None or found.title != "checked":
        raise RuntimeError("sqlalchemy suite: a cached read missed the update")


async def _relay_table(
    settings: Settings, engine: AsyncEngine, manager: AsyncInvalidationManager, outbox: Table
) -> ResultTable:
    relay = AsyncOutboxRelay(engine, manager, outbox, grace=60.0, interval=IDLE)
    contestants = {
        RELAY_SQL: lambda: _drain_sql_only(engine, outbox, relay.batch_size),
        RELAY: relay.run_once,
    }
    times: dict[str, list[float]] = {name: [] for name in contestants}
    for round_index in range(settings.relay_rounds):
        for name in rotated(list(contestants), round_index):
            await _fill_outbox(engine, outbox, settings.outbox_rows)
            gc.collect()
            gc.disable()
            try:
                started = time.perf_counter()
                drained = await contestants[name]()
                elapsed = time.perf_counter() - started
            finally:
                gc.enable()
            if drained != settings.outbox_rows:
                raise RuntimeError(
                    f"sqlalchemy suite: {name} drained {drained} of {settings.outbox_rows} rows"
                )
            times[name].append(elapsed / drained)
    await relay.aclose()
    _check_manager(manager.metrics.failed_invalidations, manager.snapshot())
    table = ResultTable(
        suite="sqlalchemy",
        title=f"Outbox relay on PostgreSQL: draining {settings.outbox_rows:,} stale rows",
        reference=RELAY_SQL,
        goal="the relay applies and deletes at least 5,000 outbox rows per second "
        "(≥ 5,000/s); the ratio is its throughput over the SQL's alone.",
        rate="outbox rows/s",
    )
    table.add(RELAY_SQL, Samples(tuple(times[RELAY_SQL])))
    table.add(RELAY, Samples(tuple(times[RELAY])), RELAY_GOAL)
    return table


async def _fill_outbox(engine: AsyncEngine, outbox: Table, count: int) -> None:
    """``count`` rows of challenge updates committed an hour ago, on a freshly vacuumed table."""
    created_at = time.time() - 3600
    rows = [
        {
            "id": uuid.uuid4().hex,
            "created_at": created_at + index * 1e-3,
            "tags": json.dumps(
                [f"challenge:{index}", "challenge", f"user:{index // 2}:challenges"]
            ),
            "entity_types": '["challenge"]',
            "source": "transaction",
        }
        for index in range(count)
    ]
    async with engine.begin() as connection:
        for start in range(0, count, 5_000):
            await connection.execute(insert(outbox), rows[start : start + 5_000])
    autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
    async with autocommit.connect() as connection:
        await connection.execute(text(f'vacuum analyze "{outbox.name}"'))


async def _drain_sql_only(engine: AsyncEngine, outbox: Table, batch_size: int) -> int:
    """What the relay does, less the invalidation: claim a batch, delete it, commit; repeat."""
    claim = (
        select(outbox.c.id, outbox.c.tags)
        .where(outbox.c.created_at < time.time() - 60.0)
        .order_by(outbox.c.created_at)
        .limit(batch_size)
        .with_for_update(skip_locked=True)
    )
    drained = 0
    while True:
        async with engine.begin() as connection:
            rows = (await connection.execute(claim)).all()
            if rows:
                await connection.execute(
                    delete(outbox).where(outbox.c.id.in_([row.id for row in rows]))
                )
        drained += len(rows)
        if len(rows) < batch_size:
            return drained


def _check_manager(failed: int, snapshot: dict[str, Any]) -> None:
    """After timing: no invalidation failed over to the retry queue."""
    if failed:
        raise RuntimeError(f"sqlalchemy suite: invalidations failed: {snapshot}")


# sync


def _sync_table(settings: Settings, engine: Engine, challenge_id: int) -> ResultTable:
    with ExitStack() as stack:
        cache = Cache.from_url(settings.redis_url, namespace=settings.namespace)
        stack.callback(cache.close)
        stack.callback(cache.clear)
        manager = InvalidationManager(cache, rules_from_models(MODELS))
        stack.callback(manager.close)
        outbox = _outbox()
        relay = OutboxRelay(engine, manager, outbox, interval=IDLE)
        stack.callback(relay.close)

        titles = itertools.count()
        lineup: Lineup[SyncLoop] = Lineup()
        for mode in (None, "commit", "strict"):
            sessions = sessionmaker(engine, expire_on_commit=False)
            if mode is not None:
                SessionInvalidation(manager, mode=mode, outbox=outbox, relay=relay).install(
                    sessions
                )
            repository = _Challenges(sessions, cache)
            if mode is not None:
                _check_sync_invalidates(repository, challenge_id)

            def updates(ops: int, repository: _Challenges = repository) -> None:
                update = repository.update
                for _ in range(ops):
                    update(challenge_id, title=f"title {next(titles)}")
                relay.delete_applied()

            name = {None: REFERENCE, "commit": COMMIT, "strict": STRICT}[mode]
            lineup.add(name, updates)

        results = measure(lineup.loops, rounds=settings.rounds, ops=settings.updates)
        _check_manager(manager.metrics.failed_invalidations, manager.snapshot())
    return _update_table(results, lineup, "sync")


def _check_sync_invalidates(repository: _Challenges, challenge_id: int) -> None:
    repository.get(challenge_id)
    repository.update(challenge_id, title="checked")
    found = repository.get(challenge_id)
    if found is None or found.title != "checked":
        raise RuntimeError("sqlalchemy suite: a cached read missed the update")
