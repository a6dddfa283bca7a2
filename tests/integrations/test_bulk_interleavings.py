"""Bulk statements racing other transactions, interleaved deterministically: the other
transaction runs exactly between the hooks' read and the statement.

On PostgreSQL (READ COMMITTED) a row that starts to match in between is changed by the
statement without having been read: RETURNING, or a row count larger than the rows read,
tells the hooks, and the row is invalidated. A row that was read is locked (FOR UPDATE) and
cannot change before the commit. SQLite has no row locks: the hooks take its write lock
before the read, so no other writer commits in between at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, delete, event, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from freshcache import Cache, DatabaseError, InvalidationManager
from freshcache.integrations.sqlalchemy import (
    BaseRepository,
    SessionInvalidation,
    rules_from_models,
)

from .conftest import Database
from .models import MODELS, Base, Challenge, User


class Users(BaseRepository[User]):
    model = User


class Challenges(BaseRepository[Challenge]):
    model = Challenge


@dataclass
class Stack:
    hooks: SessionInvalidation
    engine: Engine
    sessions: sessionmaker[Session]
    challenges: Challenges
    users: Users
    # Another application process: its own engine and hooked sessions, on the same cache.
    # It waits for no lock (NOWAIT on PostgreSQL, no busy timeout on SQLite), so that being
    # kept out shows as an error instead of a wait that would never end in one thread.
    other_sessions: sessionmaker[Session]
    other_challenges: Challenges


@pytest.fixture
def stack(database: Database) -> Iterator[Stack]:
    engine = database.engine()
    Base.metadata.create_all(engine)
    other_engine = (
        create_engine(f"{database.sync_url}?timeout=0")
        if database.kind == "sqlite"
        else database.engine()
    )
    cache = Cache.from_url("memory://")
    manager = InvalidationManager(cache, rules_from_models(MODELS))
    sessions = sessionmaker(engine, expire_on_commit=False)
    other_sessions = sessionmaker(other_engine, expire_on_commit=False)
    hooks = SessionInvalidation(manager)
    hooks.install(sessions)
    hooks.install(other_sessions)
    yield Stack(
        hooks,
        engine,
        sessions,
        Challenges(sessions, cache),
        Users(sessions, cache),
        other_sessions,
        Challenges(other_sessions, cache),
    )
    manager.close()
    other_engine.dispose()
    engine.dispose()


def between_read_and_statement(
    stack: Stack, statement: str, other: Callable[[], None]
) -> tuple[list[bool], list[Exception]]:
    """Run ``other`` just before the first SQL beginning with ``statement`` reaches the
    database: after the hooks' read, before the statement. Answers whether it ran, and
    the lock error that kept it out, if one did."""
    ran: list[bool] = []
    refused: list[Exception] = []

    def before_cursor_execute(connection: Any, cursor: Any, sql: str, *args: Any) -> None:
        if ran or not " ".join(sql.split()).startswith(statement):
            return
        ran.append(True)
        try:
            other()
        except OperationalError as exc:  # locked out
            refused.append(exc)
        except DatabaseError as exc:  # locked out, as a repository reports it
            if not isinstance(exc.__cause__, OperationalError):
                raise
            refused.append(exc)

    event.listen(stack.engine, "before_cursor_execute", before_cursor_execute)
    return ran, refused


def without_returning(stack: Stack) -> None:
    """Make the stack's dialect behave as a database without RETURNING."""
    with stack.engine.connect():  # the dialect learns the server's features at first connect
        pass
    stack.engine.dialect.update_returning = stack.engine.dialect.delete_returning = False


@pytest.mark.parametrize("returning", [True, False], ids=["returning", "rowcount"])
@pytest.mark.parametrize("kind", ["update", "delete"])
def test_a_row_made_to_match_during_a_bulk_statement_is_invalidated(
    stack: Stack, database: Database, kind: str, returning: bool
) -> None:
    """A row another transaction makes match after the hooks' read, and before the bulk statement runs, is invalidated when the statement changes it (told by RETURNING, or by a row count larger than the rows read); on SQLite that transaction cannot commit in between."""
    if not returning:
        without_returning(stack)
    ada = stack.users.add(email="ada@example.com", name="Ada")
    first = stack.challenges.add(user_id=ada.id, title="todo")
    second = stack.challenges.add(user_id=ada.id, title="draft")
    assert "draft" == stack.challenges.get(second.id).title  # type: ignore[union-attr]

    def another_transaction() -> None:
        stack.other_challenges.update(second.id, title="todo")  # commits, invalidates its row
        # A reader caches the row as that commit left it, before the bulk statement changes it.
        assert "todo" == stack.challenges.get(second.id).title  # type: ignore[union-attr]
        assert 2 == len(stack.challenges.list(user_id=ada.id))

    statement = "UPDATE challenges SET title=" if kind == "update" else "DELETE FROM challenges"
    ran, refused = between_read_and_statement(stack, statement, another_transaction)
    with stack.sessions() as session, session.begin():
        if kind == "update":
            session.execute(update(Challenge).where(Challenge.title == "todo").values(title="done"))
        else:
            session.execute(delete(Challenge).where(Challenge.title == "todo"))
    assert ran
    assert (database.kind == "sqlite") == bool(refused)

    matched = [first.id] if refused else [first.id, second.id]
    if kind == "update":
        titles = {first.id: "done", second.id: "draft" if refused else "done"}
        assert titles[second.id] == stack.challenges.get(second.id).title  # type: ignore[union-attr]
        assert list(titles.values()) == [c.title for c in stack.challenges.list(user_id=ada.id)]
    else:
        assert None is stack.challenges.get(first.id)
        assert (second.id in matched) == (None is stack.challenges.get(second.id))
        remaining = [] if second.id in matched else [second.id]
        assert remaining == [c.id for c in stack.challenges.list(user_id=ada.id)]


def test_a_core_statement_racing_another_transaction_is_invalidated(
    stack: Stack, database: Database
) -> None:
    """The same race through a Core statement on the table (no ORM involved) leaves no parent's list stale."""
    ada = stack.users.add(email="ada@example.com", name="Ada")
    bob = stack.users.add(email="bob@example.com", name="Bob")
    stack.challenges.add(user_id=ada.id, title="todo")
    second = stack.challenges.add(user_id=ada.id, title="draft")
    table = Challenge.__table__

    def another_transaction() -> None:
        stack.other_challenges.update(second.id, title="todo")
        assert 2 == len(stack.challenges.list(title="todo"))
        assert 2 == len(stack.challenges.list(user_id=ada.id))
        assert [] == stack.challenges.list(user_id=bob.id)

    ran, refused = between_read_and_statement(
        stack, "UPDATE challenges SET user_id=", another_transaction
    )
    with stack.sessions() as session, session.begin():
        session.execute(
            update(table).where(table.c.title == "todo").values(user_id=bob.id)  # type: ignore[attr-defined]
        )
    assert ran
    assert (database.kind == "sqlite") == bool(refused)

    moved = 1 if refused else 2
    assert moved == len(stack.challenges.list(user_id=bob.id))
    assert 2 - moved == len(stack.challenges.list(user_id=ada.id))


def test_a_row_read_before_a_bulk_statement_cannot_change_until_it_commits(stack: Stack) -> None:
    """Another transaction cannot move a row the hooks read before a bulk statement (it would wait; the error shows it), so the old values they record stay true."""
    ada = stack.users.add(email="ada@example.com", name="Ada")
    bob = stack.users.add(email="bob@example.com", name="Bob")
    cy = stack.users.add(email="cy@example.com", name="Cy")
    challenge = stack.challenges.add(user_id=ada.id, title="todo")

    def another_transaction() -> None:
        with stack.other_sessions() as session, session.begin():
            moved = session.get(Challenge, challenge.id, with_for_update={"nowait": True})
            moved.user_id = bob.id  # type: ignore[union-attr]
        # A reader caches Bob's list as that commit left it.
        assert 1 == len(stack.challenges.list(user_id=bob.id))

    ran, refused = between_read_and_statement(
        stack, "UPDATE challenges SET user_id=", another_transaction
    )
    with stack.sessions() as session, session.begin():
        session.execute(update(Challenge).where(Challenge.title == "todo").values(user_id=cy.id))
    assert ran

    assert 1 == len(refused)
    assert [] == stack.challenges.list(user_id=bob.id)
    assert [challenge.id] == [c.id for c in stack.challenges.list(user_id=cy.id)]


def test_an_old_value_read_for_an_expired_column_stays_true_until_the_flush(stack: Stack) -> None:
    """The old value of a column set while expired is read locked before the flush: another transaction cannot move the row before the UPDATE."""
    ada = stack.users.add(email="ada@example.com", name="Ada")
    bob = stack.users.add(email="bob@example.com", name="Bob")
    cy = stack.users.add(email="cy@example.com", name="Cy")
    challenge = stack.challenges.add(user_id=ada.id, title="todo")
    expiring = sessionmaker(stack.engine)  # expire_on_commit=True
    stack.hooks.install(expiring)

    def another_transaction() -> None:
        with stack.other_sessions() as session, session.begin():
            moved = session.get(Challenge, challenge.id, with_for_update={"nowait": True})
            moved.user_id = bob.id  # type: ignore[union-attr]
        assert 1 == len(stack.challenges.list(user_id=bob.id))

    with expiring() as session:
        with session.begin():
            instance = session.get(Challenge, challenge.id)
        ran, refused = between_read_and_statement(
            stack, "UPDATE challenges SET user_id=", another_transaction
        )
        with session.begin():  # every column expired by the first commit
            instance.user_id = cy.id  # type: ignore[union-attr]
    assert ran

    assert 1 == len(refused)
    assert [] == stack.challenges.list(user_id=ada.id)
    assert [] == stack.challenges.list(user_id=bob.id)
    assert [challenge.id] == [c.id for c in stack.challenges.list(user_id=cy.id)]
