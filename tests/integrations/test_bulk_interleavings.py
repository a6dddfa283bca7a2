"""Bulk statements racing other transactions: a row that starts to match between the hooks' read and the statement is still invalidated."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import Engine, delete, event, update
from sqlalchemy.orm import Session, sessionmaker

from freshcache import Cache, InvalidationManager
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
    engine: Engine
    sessions: sessionmaker[Session]
    challenges: Challenges
    users: Users


@pytest.fixture
def stack(database: Database) -> Iterator[Stack]:
    engine = database.engine()
    Base.metadata.create_all(engine)
    cache = Cache.from_url("memory://")
    manager = InvalidationManager(cache, rules_from_models(MODELS))
    sessions = sessionmaker(engine, expire_on_commit=False)
    SessionInvalidation(manager).install(sessions)
    yield Stack(engine, sessions, Challenges(sessions, cache), Users(sessions, cache))
    manager.close()
    engine.dispose()


def commit_between_read_and_statement(stack: Stack, table: str, other: Any) -> list[bool]:
    """Run ``other`` (another transaction, committed) just before the first UPDATE or DELETE of
    ``table`` reaches the database: after the hooks' read, before the statement."""
    ran: list[bool] = []

    def before_cursor_execute(connection: Any, cursor: Any, sql: str, *args: Any) -> None:
        words = sql.split()
        if ran or table not in [word.strip('"').lower() for word in words[:3]]:
            return
        if words[0].upper() in ("UPDATE", "DELETE"):
            ran.append(True)  # first: the other transaction's own statements pass through here
            other()

    event.listen(stack.engine, "before_cursor_execute", before_cursor_execute)
    return ran


@pytest.mark.parametrize("returning", [True, False], ids=["returning", "rowcount"])
@pytest.mark.parametrize("kind", ["update", "delete"])
def test_a_row_made_to_match_during_a_bulk_statement_is_invalidated(
    stack: Stack, kind: str, returning: bool
) -> None:
    """A row another transaction makes match after the hooks' read, and before the bulk statement runs, is invalidated when the statement changes it (told by RETURNING, or by a row count larger than the rows read)."""
    if not returning:  # as on a database without RETURNING
        with stack.engine.connect():  # the dialect learns the server's features at first connect
            pass
        stack.engine.dialect.update_returning = stack.engine.dialect.delete_returning = False
    ada = stack.users.add(email="ada@example.com", name="Ada")
    first = stack.challenges.add(user_id=ada.id, title="todo")
    second = stack.challenges.add(user_id=ada.id, title="draft")
    assert "draft" == stack.challenges.get(second.id).title  # type: ignore[union-attr]

    def another_transaction() -> None:
        stack.challenges.update(second.id, title="todo")  # commits, and invalidates its row
        # A reader caches the row as that commit left it, before the bulk statement changes it.
        assert "todo" == stack.challenges.get(second.id).title  # type: ignore[union-attr]
        assert 2 == len(stack.challenges.list(user_id=ada.id))

    ran = commit_between_read_and_statement(stack, "challenges", another_transaction)
    with stack.sessions() as session, session.begin():
        if kind == "update":
            session.execute(update(Challenge).where(Challenge.title == "todo").values(title="done"))
        else:
            session.execute(delete(Challenge).where(Challenge.title == "todo"))
    assert ran

    if kind == "update":
        assert "done" == stack.challenges.get(second.id).title  # type: ignore[union-attr]
        assert ["done", "done"] == [c.title for c in stack.challenges.list(user_id=ada.id)]
    else:
        assert None is stack.challenges.get(second.id)
        assert None is stack.challenges.get(first.id)
        assert [] == stack.challenges.list(user_id=ada.id)


def test_a_core_statement_racing_another_transaction_is_invalidated(stack: Stack) -> None:
    """The same race through a Core statement on the table (no ORM involved) leaves nothing stale."""
    ada = stack.users.add(email="ada@example.com", name="Ada")
    bob = stack.users.add(email="bob@example.com", name="Bob")
    stack.challenges.add(user_id=ada.id, title="todo")
    second = stack.challenges.add(user_id=ada.id, title="draft")
    table = Challenge.__table__

    def another_transaction() -> None:
        stack.challenges.update(second.id, title="todo")
        assert 2 == len(stack.challenges.list(title="todo"))
        assert 2 == len(stack.challenges.list(user_id=ada.id))
        assert [] == stack.challenges.list(user_id=bob.id)

    ran = commit_between_read_and_statement(stack, "challenges", another_transaction)
    with stack.sessions() as session, session.begin():
        session.execute(
            update(table).where(table.c.title == "todo").values(user_id=bob.id)  # type: ignore[attr-defined]
        )
    assert ran

    assert 2 == len(stack.challenges.list(user_id=bob.id))
    assert [] == stack.challenges.list(user_id=ada.id)
