"""Writes that skip the flush (legacy bulk methods, Core and text statements) and writes to expired or deferred columns, through hooked sessions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import bindparam, delete, insert, select, text, update
from sqlalchemy.orm import defer, make_transient_to_detached

from freshcache import AsyncCache, AsyncInvalidationManager, ConfigurationError
from freshcache.integrations.sqlalchemy import (
    SessionInvalidation,
    rules_from_models,
)
from freshcache.integrations.sqlalchemy._orm import async_sessionmaker

from ..databases import Database
from ..integrations.models import MODELS, Challenge, User
from ..integrations.support import async_create_tables
from ..integrations.writes import async_write_sync
from .hooked_sessions import Stack, Users, hooked_stack

USERS = User.__table__
CHALLENGES = Challenge.__table__


@pytest.fixture(params=["strict", "commit"])
async def stack(request: pytest.FixtureRequest, database: Database) -> AsyncIterator[Stack]:
    async with hooked_stack(database, request.param, rules_from_models(MODELS)) as stack:
        yield stack


@dataclass
class Cached:
    """Two users, a challenge of Ada's, and cached entries that a write can leave stale."""

    ada: int
    bob: int
    challenge: int
    absent: int = 900


async def cached_world(stack: Stack) -> Cached:
    ada = await stack.users.add(id=1, email="ada@example.com", name="Ada")
    bob = await stack.users.add(id=2, email="bob@example.com", name="Bob")
    challenge = await stack.challenges.add(id=10, user_id=ada.id, title="Sort a list")
    world = Cached(ada.id, bob.id, challenge.id)
    assert "Ada" == (await stack.users.get(ada.id)).name  # type: ignore[union-attr]
    assert "Bob" == (await stack.users.get(bob.id)).name  # type: ignore[union-attr]
    assert None is await stack.users.get(world.absent)
    assert 2 == len(await stack.users.list())
    assert [challenge.id] == [c.id for c in await stack.challenges.list(user_id=ada.id)]
    assert [] == await stack.challenges.list(user_id=bob.id)
    return world


async def run_sync(stack: Stack, write: Any) -> None:
    """Run a sync write (the legacy bulk methods have no async form) in a committed transaction."""
    async with stack.sessions() as session, session.begin():
        await async_write_sync(session, write)


UPDATES = {
    "bulk_update_mappings": lambda s, w: s.bulk_update_mappings(
        User, [{"id": w.ada, "name": "Ada L."}]
    ),
    "bulk_save_objects": lambda s, w: s.bulk_save_objects(
        [_detached_change(User(id=w.ada, email="ada@example.com", name="Ada"), name="Ada L.")]
    ),
    "core_update": lambda s, w: s.execute(
        update(USERS).where(USERS.c.id == w.ada).values(name="Ada L.")
    ),
    "core_update_with_params": lambda s, w: s.execute(
        update(USERS).where(USERS.c.id == w.ada), {"name": "Ada L."}
    ),
    "core_executemany_by_name": lambda s, w: s.execute(
        update(USERS).where(USERS.c.name == bindparam("old")).values(name=bindparam("new")),
        [{"old": "Ada", "new": "Ada L."}, {"old": "Nobody", "new": "x"}],
    ),
    "orm_update_by_subquery": lambda s, w: s.execute(
        update(User)
        .where(User.id.in_(select(Challenge.user_id).where(Challenge.title == "Sort a list")))
        .values(name="Ada L.")
    ),
    "orm_update_fetch": lambda s, w: s.execute(
        update(User)
        .where(User.name == "Ada")
        .values(name="Ada L.")
        .execution_options(synchronize_session="fetch")
    ),
    "orm_update_returning": lambda s, w: _check_returned(
        [w.ada],
        s.execute(update(User).where(User.name == "Ada").values(name="Ada L.").returning(User.id)),
    ),
    "connection_update": lambda s, w: s.connection().execute(
        update(USERS).where(USERS.c.id == w.ada).values(name="Ada L.")
    ),
    "text_update": lambda s, w: s.execute(
        text("UPDATE users SET name = :name WHERE id = :id"), {"name": "Ada L.", "id": w.ada}
    ),
    "driver_sql_update": lambda s, w: s.connection().exec_driver_sql(
        f"update \"users\" set name = 'Ada L.' where id = {w.ada}"
    ),
}


def _check_returned(expected: list[int], result: Any) -> None:
    """The caller's own RETURNING still hands back its rows."""
    assert expected == list(result.scalars())


def _detached_change(instance: Any, **changes: Any) -> Any:
    """An instance as if loaded in another session and then changed: persistent identity, changed attributes."""
    make_transient_to_detached(instance)
    for key, value in changes.items():
        setattr(instance, key, value)
    return instance


@pytest.mark.parametrize("how", list(UPDATES))
async def test_updates_that_skip_the_flush_invalidate_the_entity(stack: Stack, how: str) -> None:
    """An update of a mapped table through a hooked session, whatever API sends it, leaves no stale entity or list."""
    world = await cached_world(stack)

    await run_sync(stack, lambda session: UPDATES[how](session, world))

    assert "Ada L." == (await stack.users.get(world.ada)).name  # type: ignore[union-attr]
    assert ["Ada L.", "Bob"] == sorted(u.name for u in await stack.users.list())


@pytest.mark.parametrize("how", ["bulk_update_mappings", "core_update", "connection_update"])
async def test_updates_by_key_invalidate_only_their_rows(stack: Stack, how: str) -> None:
    """An update whose rows can be known (by primary key, or read) leaves other entities cached."""
    world = await cached_world(stack)

    await run_sync(stack, lambda session: UPDATES[how](session, world))

    assert "Bob" == (await stack.cache.get(f"user:{world.bob}"))["name"]  # still cached


INSERTS = {
    "bulk_insert_mappings": lambda s, w: s.bulk_insert_mappings(
        User, [{"id": w.absent, "email": "cy@example.com", "name": "Cy"}]
    ),
    "bulk_save_objects": lambda s, w: s.bulk_save_objects(
        [User(id=w.absent, email="cy@example.com", name="Cy")]
    ),
    "core_insert": lambda s, w: s.execute(
        insert(USERS), [{"id": w.absent, "email": "cy@example.com", "name": "Cy"}]
    ),
    "core_insert_values": lambda s, w: s.execute(
        insert(USERS).values(id=w.absent, email="cy@example.com", name="Cy")
    ),
    "upsert": lambda s, w: s.execute(
        _dialect_insert(s)(USERS)
        .values(id=w.absent, email="ada@example.com", name="Cy")
        .on_conflict_do_update(index_elements=["email"], set_={"name": "Ada L."})
    ),
    "text_insert": lambda s, w: s.execute(
        text("INSERT INTO users (id, email, name, score) VALUES (:id, 'cy@example.com', 'Cy', 0)"),
        {"id": w.absent},
    ),
}


def _dialect_insert(session: Any) -> Any:
    from sqlalchemy.dialects import postgresql, sqlite

    return postgresql.insert if session.bind.dialect.name == "postgresql" else sqlite.insert


@pytest.mark.parametrize("how", [how for how in INSERTS if how != "upsert"])
async def test_inserts_that_skip_the_flush_invalidate_not_found(stack: Stack, how: str) -> None:
    """An insert through a hooked session, whatever API sends it, drops the cached "not found" and the type's lists."""
    world = await cached_world(stack)

    await run_sync(stack, lambda session: INSERTS[how](session, world))

    assert "Cy" == (await stack.users.get(world.absent)).name  # type: ignore[union-attr]
    assert 3 == len(await stack.users.list())


async def test_an_upsert_invalidates_the_row_it_updates(stack: Stack) -> None:
    """An INSERT .. ON CONFLICT DO UPDATE, whose rows cannot be known from its parameters, leaves the row it updated fresh."""
    world = await cached_world(stack)

    await run_sync(stack, lambda session: INSERTS["upsert"](session, world))

    assert "Ada L." == (await stack.users.get(world.ada)).name  # type: ignore[union-attr]
    assert None is await stack.users.get(world.absent)


@pytest.mark.parametrize("how", ["bulk_insert_mappings", "core_insert"])
async def test_inserts_by_key_leave_other_entities_cached(stack: Stack, how: str) -> None:
    """An insert whose rows are in its parameters invalidates those rows and the lists they join, not every entity."""
    world = await cached_world(stack)

    await run_sync(stack, lambda session: INSERTS[how](session, world))

    assert "Bob" == (await stack.cache.get(f"user:{world.bob}"))["name"]  # still cached


async def test_an_update_that_moves_a_primary_key_invalidates_both_keys(stack: Stack) -> None:
    """An update that changes a primary key drops the old key's entry and the new key's cached "not found"."""
    world = await cached_world(stack)

    await run_sync(
        stack,
        lambda session: session.execute(
            update(USERS).where(USERS.c.id == world.bob).values(id=world.absent)
        ),
    )

    assert None is await stack.users.get(world.bob)
    assert "Bob" == (await stack.users.get(world.absent)).name  # type: ignore[union-attr]


async def test_a_rolled_back_savepoint_drops_what_its_bulk_writes_recorded(stack: Stack) -> None:
    """Bulk and Core writes undone by a savepoint rollback invalidate nothing; those after it do."""
    world = await cached_world(stack)

    def write(session: Any) -> None:
        savepoint = session.begin_nested()
        session.bulk_update_mappings(User, [{"id": world.ada, "name": "never"}])
        session.execute(update(USERS).where(USERS.c.id == world.ada).values(score=9))
        savepoint.rollback()
        session.execute(update(USERS).where(USERS.c.id == world.bob).values(name="Robert"))

    await run_sync(stack, write)

    assert "Ada" == (await stack.cache.get(f"user:{world.ada}"))["name"]  # still cached
    assert "Robert" == (await stack.users.get(world.bob)).name  # type: ignore[union-attr]


@pytest.mark.parametrize("how", ["core_delete", "text_delete"])
async def test_a_core_delete_invalidates_what_the_database_cascades(stack: Stack, how: str) -> None:
    """Deleting a user with a Core or text statement drops the challenges ON DELETE CASCADE removes with it."""
    world = await cached_world(stack)
    assert "Sort a list" == (await stack.challenges.get(world.challenge)).title  # type: ignore[union-attr]
    delete_ada = {
        "core_delete": lambda s: s.execute(delete(USERS).where(USERS.c.id == world.ada)),
        "text_delete": lambda s: s.execute(
            text("DELETE FROM users WHERE id = :id"), {"id": world.ada}
        ),
    }[how]

    await run_sync(stack, delete_ada)

    assert None is await stack.challenges.get(world.challenge)
    assert [] == await stack.challenges.list(user_id=world.ada)


DELETES = {
    "core_delete": lambda s, w: s.execute(delete(USERS).where(USERS.c.id == w.bob)),
    "connection_delete": lambda s, w: s.connection().execute(
        delete(USERS).where(USERS.c.name == "Bob")
    ),
    "text_delete": lambda s, w: s.execute(text("DELETE FROM users WHERE id = :id"), {"id": w.bob}),
}


@pytest.mark.parametrize("how", list(DELETES))
async def test_deletes_that_skip_the_flush_invalidate_the_entity(stack: Stack, how: str) -> None:
    """A delete through a hooked session, whatever API sends it, leaves no cached entity or list behind."""
    world = await cached_world(stack)

    await run_sync(stack, lambda session: DELETES[how](session, world))

    assert None is await stack.users.get(world.bob)
    assert ["Ada"] == [u.name for u in await stack.users.list()]


MOVES = {
    "bulk_update_mappings": lambda s, w: s.bulk_update_mappings(
        Challenge, [{"id": w.challenge, "user_id": w.bob}]
    ),
    "core_update": lambda s, w: s.execute(
        update(CHALLENGES).where(CHALLENGES.c.title == "Sort a list").values(user_id=w.bob)
    ),
    "text_update": lambda s, w: s.execute(
        text("UPDATE challenges SET user_id = :bob WHERE id = :id"),
        {"bob": w.bob, "id": w.challenge},
    ),
}


@pytest.mark.parametrize("how", list(MOVES))
async def test_moving_a_child_outside_the_flush_invalidates_both_parents_lists(
    stack: Stack, how: str
) -> None:
    """A foreign key changed by a bulk or Core statement leaves neither the old nor the new parent's list stale."""
    world = await cached_world(stack)

    await run_sync(stack, lambda session: MOVES[how](session, world))

    assert [] == await stack.challenges.list(user_id=world.ada)
    assert [world.challenge] == [c.id for c in await stack.challenges.list(user_id=world.bob)]


async def test_text_that_only_reads_invalidates_nothing(stack: Stack) -> None:
    """Raw SQL without a writing verb (a SELECT, even FOR UPDATE, or one quoting 'delete') leaves every entry cached."""
    world = await cached_world(stack)
    lock = "" if stack.database.kind == "sqlite" else " FOR UPDATE"

    async with stack.sessions() as session, session.begin():
        await session.execute(
            text(f"SELECT id FROM users WHERE name <> 'delete from users' AND id = :id{lock}"),
            {"id": world.ada},
        )

    assert "Ada" == (await stack.cache.get(f"user:{world.ada}"))["name"]  # still cached


async def test_text_writing_through_a_procedure_is_invalidated_when_named(stack: Stack) -> None:
    """SQL that changes a mapped table out of sight (here through a trigger) invalidates the types named in freshcache_writes."""
    world = await cached_world(stack)
    async with stack.engine.begin() as connection:
        await connection.execute(text("CREATE TABLE renames (user_id INTEGER, name VARCHAR(200))"))
        if stack.database.kind == "sqlite":
            await connection.execute(
                text(
                    "CREATE TRIGGER rename AFTER INSERT ON renames BEGIN "
                    "UPDATE users SET name = NEW.name WHERE id = NEW.user_id; END"
                )
            )
        else:
            await connection.execute(
                text(
                    "CREATE FUNCTION rename() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                    "UPDATE users SET name = NEW.name WHERE id = NEW.user_id; RETURN NEW; END $$"
                )
            )
            await connection.execute(
                text(
                    "CREATE TRIGGER rename AFTER INSERT ON renames "
                    "FOR EACH ROW EXECUTE FUNCTION rename()"
                )
            )

    async with stack.sessions() as session, session.begin():
        await session.execute(
            text("INSERT INTO renames VALUES (:id, 'Ada L.')"),
            {"id": world.ada},
            execution_options={"freshcache_writes": [User]},
        )

    assert "Ada L." == (await stack.users.get(world.ada)).name  # type: ignore[union-attr]


async def test_a_bad_freshcache_writes_option_is_refused_before_the_write(stack: Stack) -> None:
    """freshcache_writes naming something that is not a mapped class or a known entity type is refused, and nothing is written."""
    world = await cached_world(stack)

    with pytest.raises(ConfigurationError, match="freshcache_writes"):
        async with stack.sessions() as session, session.begin():
            await session.execute(
                text("UPDATE users SET name = 'never' WHERE id = :id"),
                {"id": world.ada},
                execution_options={"freshcache_writes": ["no_such_type"]},
            )

    assert "Ada" == (await stack.users.get(world.ada)).name  # type: ignore[union-attr]


# Columns the session does not hold when they are set (expired by a commit, or deferred)


async def test_moving_an_expired_child_invalidates_both_parents_lists(stack: Stack) -> None:
    """With expire_on_commit, a foreign key set on an expired object commits and invalidates the old and the new parent's lists."""
    world = await cached_world(stack)
    sessions = async_sessionmaker(stack.engine)  # expire_on_commit=True, SQLAlchemy's default
    stack.hooks.install(sessions)

    async with sessions() as session:
        async with session.begin():
            challenge = await session.get(Challenge, world.challenge)
        async with session.begin():  # every column expired by the first commit
            challenge.user_id = world.bob  # type: ignore[union-attr]

    assert [] == await stack.challenges.list(user_id=world.ada)
    assert [world.challenge] == [c.id for c in await stack.challenges.list(user_id=world.bob)]


async def test_moving_a_child_loaded_with_a_deferred_key_invalidates_both_lists(
    stack: Stack,
) -> None:
    """A foreign key set while deferred (never loaded) commits and invalidates the old and the new parent's lists."""
    world = await cached_world(stack)

    async with stack.sessions() as session, session.begin():
        challenge = await session.get(
            Challenge, world.challenge, options=[defer(Challenge.user_id)]
        )
        challenge.user_id = world.bob  # type: ignore[union-attr]

    assert [] == await stack.challenges.list(user_id=world.ada)
    assert [world.challenge] == [c.id for c in await stack.challenges.list(user_id=world.bob)]


async def test_deleting_a_child_whose_key_was_set_unloaded_invalidates_the_old_list(
    stack: Stack,
) -> None:
    """An object whose deferred foreign key was set and which is then deleted invalidates the list it was really in."""
    world = await cached_world(stack)

    async with stack.sessions() as session, session.begin():
        challenge = await session.get(
            Challenge, world.challenge, options=[defer(Challenge.user_id)]
        )
        challenge.user_id = world.bob  # type: ignore[union-attr]
        await session.delete(challenge)

    assert [] == await stack.challenges.list(user_id=world.ada)


async def test_a_value_the_rules_cannot_format_never_fails_the_write(database: Database) -> None:
    """A change whose tag cannot be formatted commits anyway and invalidates every entry of its type."""
    engine = database.async_engine()
    await async_create_tables(engine)
    cache = AsyncCache.from_url("memory://")
    rules = rules_from_models(MODELS).entity("user", tags=["by-name:{name}"])
    manager = AsyncInvalidationManager(cache, rules)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    SessionInvalidation(manager).install(sessions)
    users = Users(sessions, cache)
    try:
        ada = await users.add(email="ada@example.com", name="Ada")
        assert "Ada" == (await users.get(ada.id)).name  # type: ignore[union-attr]

        await users.update(ada.id, name="Ada Lovelace")  # a space: not a character tags hold

        assert "Ada Lovelace" == (await users.get(ada.id)).name  # type: ignore[union-attr]
    finally:
        await manager.aclose()
        await engine.dispose()


async def test_a_bulk_statement_still_reports_its_row_count(stack: Stack) -> None:
    """The RETURNING the hooks add does not change the row count the caller reads."""
    await cached_world(stack)

    async with stack.sessions() as session, session.begin():
        core = await session.execute(update(USERS).where(USERS.c.score == 0).values(score=1))
        orm = await session.execute(update(User).where(User.score == 1).values(score=2))
        deleted = await session.execute(delete(Challenge).where(Challenge.title != ""))

    assert [2, 2, 1] == [core.rowcount, orm.rowcount, deleted.rowcount]  # type: ignore[attr-defined]
