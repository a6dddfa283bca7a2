"""Data sets: a small one for a first run, or a large one for a benchmark, written in bulk.

Rows go in batches of multi-row INSERTs through the service's repositories' transactions,
so the hooks see them like any write: the ids are the database's, so each batch bumps
the tables' wide and bulk tags once (a live cache sharing the database stays right) and
costs one outbox row, not one per row.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from freshcache.app.models import Challenge, Evaluation, User, utcnow
from freshcache.app.repositories import Users

FOCUS_AREAS = ("algorithms", "databases", "networking", "security", "frontend")
DIFFICULTIES = ("easy", "medium", "hard")
STATUSES = ("open", "in_progress", "done")
TABLES = ("users", "challenges", "evaluations")

# Rows per transaction (one COPY on PostgreSQL; multi-row INSERTs of about a thousand elsewhere).
BATCH = 10_000

Progress = Callable[[str, int, int], None]  # (table, rows done, rows in all)


@dataclass(frozen=True)
class Sizes:
    """How many rows of each table to generate."""

    users: int = 20
    challenges: int = 60
    evaluations: int = 120

    def __post_init__(self) -> None:
        for table in TABLES:
            if getattr(self, table) < 0:
                raise ValueError(
                    f"{table}: a data set takes 0 rows or more, not {getattr(self, table)}"
                )
        if self.challenges and not self.users:
            raise ValueError("challenges: they need users to belong to (users is 0)")
        if self.evaluations and not self.challenges:
            raise ValueError("evaluations: they need challenges to evaluate (challenges is 0)")

    @property
    def total(self) -> int:
        return self.users + self.challenges + self.evaluations


async def counts(users: Users) -> dict[str, int]:
    """The rows in each of the service's tables."""
    async with users.sessions() as session:
        return {
            table: int(await session.scalar(select(func.count()).select_from(model)) or 0)
            for table, model in zip(TABLES, (User, Challenge, Evaluation), strict=True)
        }


async def is_empty(users: Users) -> bool:
    async with users.sessions() as session:
        return await session.scalar(select(User.id).limit(1)) is None


async def reset(users: Users) -> None:
    """Delete every user, challenge and evaluation in one transaction (their cached reads go with them)."""
    async with users.transaction() as session:
        for model in (Evaluation, Challenge, User):
            await session.execute(delete(model))


async def seed(
    users: Users,
    sizes: Sizes = Sizes(),
    *,
    on_progress: Progress | None = None,
    random_seed: int = 7,
) -> int:
    """Insert a generated data set beside what is there; returns the rows written.

    Challenges belong to the new users and evaluations to the new challenges (scored for
    the challenge's user), so no cached read of the rows already there changes.
    ``on_progress(table, done, total)`` follows each batch.
    """
    chance = random.Random(random_seed)
    async with users.sessions() as session:
        first = int(await session.scalar(select(func.coalesce(func.max(User.id), 0))) or 0) + 1
    now = utcnow()
    report = on_progress or (lambda table, done, total: None)

    user_ids = await _insert(
        users,
        User,
        (
            {
                "email": f"user{first + n}@example.com",
                "name": f"User {first + n}",
                "focus_area": chance.choice(FOCUS_AREAS),
                "last_seen_at": None,
                "created_at": now,
                "updated_at": now,
            }
            for n in range(sizes.users)
        ),
        sizes.users,
        lambda done: report("users", done, sizes.users),
    )
    owners = [chance.choice(user_ids) for _ in range(sizes.challenges)]
    challenge_ids = await _insert(
        users,
        Challenge,
        (
            {
                "user_id": owner,
                "title": f"Challenge {n + 1} of user {owner}",
                "content": "Explain the idea, then implement it and measure it.",
                "difficulty": chance.choice(DIFFICULTIES),
                "status": chance.choice(STATUSES),
                "created_at": now,
                "updated_at": now,
            }
            for n, owner in enumerate(owners)
        ),
        sizes.challenges,
        lambda done: report("challenges", done, sizes.challenges),
    )
    owner_of = dict(zip(challenge_ids, owners, strict=True))
    evaluated = [chance.choice(challenge_ids) for _ in range(sizes.evaluations)]
    await _insert(
        users,
        Evaluation,
        (
            {
                "challenge_id": challenge_id,
                "user_id": owner_of[challenge_id],
                "score": chance.randint(40, 100),
                "feedback": "Generated.",
                "created_at": now,
            }
            for challenge_id in evaluated
        ),
        sizes.evaluations,
        lambda done: report("evaluations", done, sizes.evaluations),
    )
    return sizes.total


async def _insert(
    users: Users,
    model: type[Any],
    rows: Iterator[dict[str, Any]],
    count: int,
    done: Callable[[int], None],
) -> list[int]:
    """Insert ``count`` rows in transactions of BATCH; their ids in the order given."""
    ids: list[int] = []
    done(0)
    while len(ids) < count:
        batch = [next(rows) for _ in range(min(BATCH, count - len(ids)))]
        async with users.transaction() as session:
            dialect = (await session.connection()).dialect
            if dialect.name == "postgresql" and dialect.driver == "psycopg":
                ids.extend(await _copy(session, model, batch))
            elif dialect.name == "sqlite":
                ids.extend(await _insert_sqlite(session, model, batch))
            else:
                statement = insert(model).returning(model.id, sort_by_parameter_order=True)
                ids.extend((await session.scalars(statement, batch)).all())
        done(len(ids))
    return ids


async def _insert_sqlite(
    session: AsyncSession, model: type[Any], batch: list[dict[str, Any]]
) -> range:
    """Multi-row INSERTs without RETURNING, which SQLite would make one statement per row.

    SQLite gives a new row the largest id plus one, and holds its one writer lock from the
    first INSERT to the commit, so the batch's ids are the last ones, in order.
    """
    await session.execute(insert(model.__table__), batch)
    last = int(await session.scalar(select(func.max(model.id))) or 0)
    return range(last - len(batch) + 1, last + 1)


async def _copy(session: AsyncSession, model: type[Any], batch: list[dict[str, Any]]) -> list[int]:
    """PostgreSQL's COPY, several times faster than INSERT: ids drawn from the table's sequence first.

    The hooks cannot see a COPY, so the statement drawing the ids names the table as
    written (``freshcache_writes``): the commit bumps its wide and bulk tags.
    """
    table = model.__table__
    ids = list(
        await session.scalars(
            text(
                "SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :n)"
            ),
            {"table": table.name, "n": len(batch)},
            execution_options={"freshcache_writes": [model]},
        )
    )
    columns = ["id", *batch[0]]
    connection = await session.connection()
    driver = (await connection.get_raw_connection()).driver_connection
    assert driver is not None
    sql = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN"
    async with driver.cursor() as cursor, cursor.copy(sql) as copy:
        for id, row in zip(ids, batch, strict=True):
            await copy.write_row((id, *row.values()))
    return ids
