"""The repository's boundary: the database's errors come out as freshcache's, and nothing is left broken."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DataError, IntegrityError, ProgrammingError

from freshcache import (
    ConflictError,
    DatabaseError,
    FreshcacheError,
    InvalidEntityError,
)
from freshcache.integrations.sqlalchemy import (
    rules_from_models,
)

from ..databases import Database
from ..integrations.models import MODELS, User
from .hooked_sessions import Stack, hooked_stack


@pytest.fixture
async def parts(postgres: Database) -> AsyncIterator[Stack]:
    """The hooked stack on PostgreSQL with one connection: it must come back clean."""
    rules = rules_from_models(MODELS)
    async with hooked_stack(postgres, "strict", rules, pool_size=1, max_overflow=0) as stack:
        yield stack


async def test_an_insert_that_breaks_a_unique_key_is_a_conflict(parts: Stack) -> None:
    """A duplicate email raises ConflictError caused by the IntegrityError, and the next writes and reads work and are cached."""
    await parts.users.add(id=1, email="ada@example.com", name="Ada")
    assert None is await parts.users.get(2)

    with pytest.raises(ConflictError, match=r"^user: the database refused the write") as raised:
        await parts.users.add(id=2, email="ada@example.com", name="Impostor")

    assert isinstance(raised.value, FreshcacheError)
    assert isinstance(raised.value.__cause__, IntegrityError)
    assert "[SQL:" not in str(raised.value)
    assert None is await parts.users.get(2)
    await parts.users.add(id=2, email="grace@example.com", name="Grace")
    assert "Grace" == (await parts.users.get(2)).name  # type: ignore[union-attr]
    hits = parts.cache.metrics.hits
    assert "Grace" == (await parts.users.get(2)).name  # type: ignore[union-attr]
    assert hits + 1 == parts.cache.metrics.hits  # no mark left pending: the cache serves it


async def test_an_update_that_breaks_a_unique_key_is_a_conflict_and_changes_nothing(
    parts: Stack,
) -> None:
    """Moving a user onto another's email raises ConflictError; the row and its cached value stay as they were."""
    await parts.users.add(id=1, email="ada@example.com", name="Ada")
    await parts.users.add(id=2, email="grace@example.com", name="Grace")
    assert "grace@example.com" == (await parts.users.get(2)).email  # type: ignore[union-attr]

    with pytest.raises(ConflictError) as raised:
        await parts.users.update(2, email="ada@example.com", name="Renamed")

    assert isinstance(raised.value.__cause__, IntegrityError)
    assert ("Grace", "grace@example.com") == (
        (await parts.users.get(2)).name,  # type: ignore[union-attr]
        (await parts.users.get(2)).email,  # type: ignore[union-attr]
    )
    assert "Grace Hopper" == (await parts.users.update(2, name="Grace Hopper")).name  # type: ignore[union-attr]


async def test_a_conflict_at_the_end_of_a_transaction_block_is_a_conflict(parts: Stack) -> None:
    """A duplicate added in the caller's own transaction() block surfaces as ConflictError when the block commits."""
    await parts.users.add(id=1, email="ada@example.com", name="Ada")

    with pytest.raises(ConflictError):
        async with parts.users.transaction() as session:
            session.add(User(id=2, email="ada@example.com", name="Impostor"))

    assert [1] == [user.id for user in await parts.users.list()]


async def test_a_value_the_database_refuses_is_an_invalid_entity(parts: Stack) -> None:
    """A name longer than its column raises InvalidEntityError caused by the DataError."""
    with pytest.raises(InvalidEntityError, match=r"^user: the database refused a value") as raised:
        await parts.users.add(id=1, email="ada@example.com", name="A" * 500)

    assert isinstance(raised.value.__cause__, DataError)
    assert [] == await parts.users.list()


async def test_any_other_database_error_is_a_database_error(parts: Stack) -> None:
    """A statement the database rejects inside transaction() raises DatabaseError with the cause, and the connection serves the next call."""
    with pytest.raises(DatabaseError, match=r"^user: ProgrammingError") as raised:
        async with parts.users.transaction() as session:
            await session.execute(text("select * from no_such_table"))

    assert isinstance(raised.value.__cause__, ProgrammingError)
    assert "Ada" == (await parts.users.add(id=1, email="ada@example.com", name="Ada")).name


# What the client did not cause: an IntegrityError from the outbox, on either database

# A real refusal of the outbox's insert, the statement after the entity's own. PostgreSQL
# names the outbox as the table whose constraint refused; SQLite's trigger names no table.
REFUSE_THE_OUTBOX = {
    "postgresql": [
        "alter table freshcache_outbox add constraint refuse_writes check (false) not valid"
    ],
    "sqlite": [
        "create trigger refuse_writes before insert on freshcache_outbox "
        "begin select raise(abort, 'outbox refused'); end"
    ],
}
ALLOW_THE_OUTBOX = {
    "postgresql": ["alter table freshcache_outbox drop constraint refuse_writes"],
    "sqlite": ["drop trigger refuse_writes"],
}


@pytest.fixture
async def stack(database: Database) -> AsyncIterator[Stack]:
    """The hooked stack on SQLite and on PostgreSQL."""
    async with hooked_stack(database, "strict", rules_from_models(MODELS)) as stack:
        yield stack


async def execute(stack: Stack, statements: list[str]) -> None:
    async with stack.engine.begin() as connection:
        for statement in statements:
            await connection.execute(text(statement))


async def test_an_outbox_insert_refused_is_a_database_error_not_a_conflict(stack: Stack) -> None:
    """The outbox's insert refused by an IntegrityError raises DatabaseError (a 503), not ConflictError, and writes nothing."""
    await stack.users.add(id=1, email="ada@example.com", name="Ada")
    await execute(stack, REFUSE_THE_OUTBOX[stack.database.kind])

    with pytest.raises(DatabaseError, match=r"^user: the database refused the write for") as raised:
        await stack.users.update(1, name="Changed")

    assert not isinstance(raised.value, ConflictError)
    assert isinstance(raised.value.__cause__, IntegrityError)
    assert "Ada" == (await stack.users.get(1)).name  # type: ignore[union-attr]
    await execute(stack, ALLOW_THE_OUTBOX[stack.database.kind])
    assert "Changed" == (await stack.users.update(1, name="Changed")).name  # type: ignore[union-attr]


async def test_the_clients_own_violations_are_conflicts_on_either_database(stack: Stack) -> None:
    """A duplicate email and a challenge of a user that does not exist are ConflictErrors on SQLite and PostgreSQL."""
    await stack.users.add(id=1, email="ada@example.com", name="Ada")

    with pytest.raises(ConflictError) as duplicate:
        await stack.users.add(id=2, email="ada@example.com", name="Impostor")
    with pytest.raises(ConflictError) as orphan:
        await stack.challenges.add(id=1, user_id=404, title="Orphan")

    assert isinstance(duplicate.value.__cause__, IntegrityError)
    assert isinstance(orphan.value.__cause__, IntegrityError)
    assert [] == await stack.challenges.list()
