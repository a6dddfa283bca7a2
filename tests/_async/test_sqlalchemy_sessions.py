"""Session hooks and the repository, on SQLite and PostgreSQL, through sessions that invalidate on commit."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.util import await_only

from freshcache import AsyncCache, AsyncInvalidationManager, ConfigurationError, InvalidEntityError
from freshcache.integrations.sqlalchemy import (
    SessionInvalidation,
    rules_from_models,
)
from freshcache.integrations.sqlalchemy._orm import async_sessionmaker
from freshcache.integrations.sqlalchemy._recording import _INFO_KEY

from ..databases import Database
from ..integrations.models import MODELS, Challenge, Evaluation, User
from ..integrations.support import async_count_rows, async_event_target
from .hooked_sessions import OUTBOX, Stack, hooked_stack


@pytest.fixture(params=["strict", "commit"])
async def stack(request: pytest.FixtureRequest, database: Database) -> AsyncIterator[Stack]:
    async with hooked_stack(
        database,
        request.param,
        rules_from_models(MODELS).entity("user", tags=["leaderboard"], fields={"score"}),
    ) as stack:
        yield stack


async def test_insert_invalidates_a_cached_not_found(stack: Stack) -> None:
    """A cached "no such user" is gone once the insert that creates the user commits."""
    assert None is await stack.users.get(1)

    await stack.users.add(id=1, email="ada@example.com", name="Ada")

    user = await stack.users.get(1)
    assert user is not None
    assert "Ada" == user.name


async def test_update_invalidates_the_entity_and_field_rules(stack: Stack) -> None:
    """An update drops the entity; a field-level rule fires only when its field changed."""
    user = await stack.users.add(email="ada@example.com", name="Ada", score=1)
    await stack.users.get(user.id)
    await stack.cache.set("leaderboard", ["ada"], tags=["leaderboard"])

    await stack.users.update(user.id, name="Ada Lovelace")

    assert "Ada Lovelace" == (await stack.users.get(user.id)).name  # type: ignore[union-attr]
    assert ["ada"] == await stack.cache.get("leaderboard")

    await stack.users.update(user.id, score=2)

    assert None is await stack.cache.get("leaderboard")


async def test_moving_a_challenge_invalidates_both_users_lists(stack: Stack) -> None:
    """A challenge moved from one user to another leaves neither user's list stale."""
    ada = await stack.users.add(email="ada@example.com", name="Ada")
    bob = await stack.users.add(email="bob@example.com", name="Bob")
    challenge = await stack.challenges.add(user_id=ada.id, title="Sort a list")
    assert [challenge.id] == [c.id for c in await stack.challenges.list(user_id=ada.id)]
    assert [] == await stack.challenges.list(user_id=bob.id)

    await stack.challenges.update(challenge.id, user_id=bob.id)

    assert [] == await stack.challenges.list(user_id=ada.id)
    assert [challenge.id] == [c.id for c in await stack.challenges.list(user_id=bob.id)]


async def test_deleting_a_user_invalidates_the_cascaded_challenges(stack: Stack) -> None:
    """Deleting a user whose challenges cascade drops the user, its list and each challenge."""
    ada = await stack.users.add(email="ada@example.com", name="Ada")
    first = await stack.challenges.add(user_id=ada.id, title="One")
    await stack.challenges.add(user_id=ada.id, title="Two")
    assert 2 == len(await stack.challenges.list(user_id=ada.id))
    assert 2 == len(await stack.challenges.list())
    assert first.title == (await stack.challenges.get(first.id)).title  # type: ignore[union-attr]

    async with stack.sessions() as session, session.begin():
        await session.delete(await session.get(User, ada.id))  # the ORM cascades to the challenges

    assert None is await stack.users.get(ada.id)
    assert [] == await stack.challenges.list(user_id=ada.id)
    assert [] == await stack.challenges.list()
    assert None is await stack.challenges.get(first.id)


async def test_bulk_update_and_delete_statements_are_caught(stack: Stack) -> None:
    """update() and delete() statements, bypassing the ORM's objects, still invalidate what they touch."""
    ada = await stack.users.add(email="ada@example.com", name="Ada")
    bob = await stack.users.add(email="bob@example.com", name="Bob")
    await stack.users.get(ada.id)
    await stack.users.get(bob.id)

    async with stack.sessions() as session, session.begin():
        await session.execute(update(User).where(User.id == ada.id).values(name="Ada L."))

    assert "Ada L." == (await stack.users.get(ada.id)).name  # type: ignore[union-attr]
    assert "bob@example.com" == (await stack.cache.get(f"user:{bob.id}"))["email"]

    async with stack.sessions() as session, session.begin():
        await session.execute(delete(User).where(User.name == "Bob"))

    assert None is await stack.users.get(bob.id)


async def test_bulk_statement_past_the_row_limit_invalidates_every_entry_of_the_type(
    stack: Stack,
) -> None:
    """A bulk statement touching more rows than bulk_row_limit reaches every cached entry of the type: by id, per parent, and unfiltered."""
    stack.hooks.bulk_row_limit = 2
    ada = await stack.users.add(email="ada@example.com", name="Ada")
    first = await stack.challenges.add(user_id=ada.id, title="c0")
    for n in range(1, 4):
        await stack.challenges.add(user_id=ada.id, title=f"c{n}")
    assert "c0" == (await stack.challenges.get(first.id)).title  # type: ignore[union-attr]
    assert 4 == len(await stack.challenges.list(user_id=ada.id))
    assert 4 == len(await stack.challenges.list())

    async with stack.sessions() as session, session.begin():
        await session.execute(update(Challenge).values(title="renamed"))

    assert "renamed" == (await stack.challenges.get(first.id)).title  # type: ignore[union-attr]
    assert ["renamed"] * 4 == [c.title for c in await stack.challenges.list(user_id=ada.id)]
    assert ["renamed"] * 4 == [c.title for c in await stack.challenges.list()]


async def test_bulk_insert_reaches_not_found_and_lists(stack: Stack) -> None:
    """An insert() statement drops the cached "not found" of the new row and the lists it joins."""
    ada = await stack.users.add(email="ada@example.com", name="Ada")
    assert None is await stack.challenges.get(900)
    assert [] == await stack.challenges.list(user_id=ada.id)

    async with stack.sessions() as session, session.begin():
        await session.execute(insert(Challenge), [{"id": 900, "user_id": ada.id, "title": "bulk"}])

    assert "bulk" == (await stack.challenges.get(900)).title  # type: ignore[union-attr]
    assert [900] == [c.id for c in await stack.challenges.list(user_id=ada.id)]


async def test_orm_bulk_update_by_primary_key_reads_only_its_rows(stack: Stack) -> None:
    """update(Model) with a list of rows by primary key invalidates those rows, even on a table larger than the limit."""
    stack.hooks.bulk_row_limit = 2
    ids = [(await stack.challenges.add(title=f"c{n}")).id for n in range(4)]
    assert "c0" == (await stack.challenges.get(ids[0])).title  # type: ignore[union-attr]
    assert "c1" == (await stack.challenges.get(ids[1])).title  # type: ignore[union-attr]

    async with stack.sessions() as session, session.begin():
        await session.execute(update(Challenge), [{"id": ids[0], "title": "by key"}])

    assert "by key" == (await stack.challenges.get(ids[0])).title  # type: ignore[union-attr]
    assert (
        "c1" == (await stack.cache.get(f"challenge:{ids[1]}"))["title"]
    )  # untouched, still cached


async def test_a_rolled_back_savepoint_drops_its_invalidations(stack: Stack) -> None:
    """Changes undone by a savepoint rollback invalidate nothing; the rest of the transaction does."""
    ada = await stack.users.add(email="ada@example.com", name="Ada")
    bob = await stack.users.add(email="bob@example.com", name="Bob")
    await stack.users.get(ada.id)
    await stack.users.get(bob.id)

    async with stack.sessions() as session, session.begin():
        savepoint = await session.begin_nested()
        (await session.get(User, ada.id)).name = "never"  # type: ignore[union-attr]
        inner = await session.begin_nested()
        await session.execute(update(User).where(User.id == ada.id).values(score=99))
        await inner.commit()
        await savepoint.rollback()  # undoes the inner, released savepoint as well
        (await session.get(User, bob.id)).name = "Robert"  # type: ignore[union-attr]

    assert "ada@example.com" == (await stack.cache.get(f"user:{ada.id}"))["email"]  # still cached
    assert None is await stack.cache.get(f"user:{bob.id}")
    assert "Robert" == (await stack.users.get(bob.id)).name  # type: ignore[union-attr]


async def test_a_rollback_invalidates_nothing(stack: Stack) -> None:
    """A rolled-back transaction leaves the cache as it was: entries stay hits, no pending mark remains."""
    ada = await stack.users.add(email="ada@example.com", name="Ada")
    await stack.users.get(ada.id)

    async def fail() -> None:
        async with stack.sessions() as session, session.begin():
            (await session.get(User, ada.id)).name = "never"  # type: ignore[union-attr]
            await session.flush()
            raise RuntimeError("abort")

    with pytest.raises(RuntimeError, match="abort"):
        await fail()

    assert "Ada" == (await stack.cache.get(f"user:{ada.id}", tags=[f"user:{ada.id}"]))["name"]
    assert 0 == stack.cache.metrics.pending_bypasses


async def test_strict_mode_holds_tags_pending_until_invalidated(stack: Stack) -> None:
    """Between the commit and the invalidation, strict mode makes readers bypass the cache; commit mode does not."""
    ada = await stack.users.add(email="ada@example.com", name="Ada")
    await stack.users.get(ada.id)
    seen: list[Any] = []

    def between(session: Any) -> None:
        tag = f"user:{ada.id}"
        versions = stack.cache.backend.tag_versions([tag])
        # A hook is sync code; under an AsyncSession it runs in SQLAlchemy's greenlet.
        seen.append((await_only(versions) if inspect.isawaitable(versions) else versions)[tag])

    stack.hooks.on_committed = between
    await stack.users.update(ada.id, name="Ada L.")

    from freshcache import PENDING_VERSION

    assert [PENDING_VERSION if stack.hooks.mode == "strict" else seen[0]] == seen
    assert seen[0] is not None
    assert "Ada L." == (await stack.users.get(ada.id)).name  # type: ignore[union-attr]


async def test_outbox_rows_are_written_and_cleaned_up(stack: Stack) -> None:
    """Each write transaction leaves one outbox row, which the relay deletes once applied."""
    for n in range(5):
        await stack.users.add(email=f"u{n}@example.com", name=f"U{n}")

    await stack.relay.aclose()  # stops its background worker, deleting what it had not yet

    assert 0 == await async_count_rows(stack.engine, OUTBOX)
    assert 5 == stack.relay.deleted_rows


async def test_repository_refuses_bad_input_and_writes_nothing(stack: Stack) -> None:
    """Unknown columns, a changed primary key or a bad list bound are refused with the reason, and nothing is written."""
    ada = await stack.users.add(email="ada@example.com", name="Ada")

    with pytest.raises(InvalidEntityError, match="user has no column nickname"):
        await stack.users.update(ada.id, nickname="x", name="changed")
    with pytest.raises(InvalidEntityError, match="primary key \\(id\\) cannot change"):
        await stack.users.update(ada.id, id=ada.id + 1)
    with pytest.raises(InvalidEntityError, match="user has no column colour"):
        await stack.users.list(colour="red")
    with pytest.raises(InvalidEntityError, match="limit must be 1 to 1000"):
        await stack.users.list(limit=0)
    with pytest.raises(InvalidEntityError, match="identified by id"):
        await stack.users.get({"uid": 1})

    assert "Ada" == (await stack.users.get(ada.id)).name  # type: ignore[union-attr]
    assert None is await stack.users.update(ada.id + 100, name="ghost")
    assert not await stack.users.delete(ada.id + 100)
    assert await stack.users.delete(ada.id)


async def test_installing_on_the_wrong_factory_is_refused(database: Database) -> None:
    """An unknown mode, or a factory of the other flavour, is a ConfigurationError."""
    manager = AsyncInvalidationManager(AsyncCache.from_url("memory://"), rules_from_models(MODELS))
    with pytest.raises(ConfigurationError, match="mode must be 'strict' or 'commit'"):
        SessionInvalidation(manager, mode="eventual")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="install takes a sessionmaker"):
        SessionInvalidation(manager).install(object())  # type: ignore[arg-type]


async def test_expired_objects_are_loaded_before_the_flush(
    stack: Stack, database: Database
) -> None:
    """With expire_on_commit (SQLAlchemy's default), changing one field of an expired object still invalidates every tag."""
    sessions = async_sessionmaker(stack.engine)  # expire_on_commit=True
    stack.hooks.install(sessions)
    ada = await stack.users.add(email="ada@example.com", name="Ada")
    challenge = await stack.challenges.add(user_id=ada.id, title="One")
    await stack.challenges.list(user_id=ada.id)

    async with sessions() as session:
        async with session.begin():
            instance = await session.get(Challenge, challenge.id)
        async with session.begin():  # instance expired by the first commit
            instance.title = "Renamed"  # type: ignore[union-attr]

    assert ["Renamed"] == [c.title for c in await stack.challenges.list(user_id=ada.id)]


@pytest.mark.parametrize("how", ["orm", "bulk"])
async def test_rows_the_database_cascades_are_invalidated_too(stack: Stack, how: str) -> None:
    """Rows the database deletes by ON DELETE CASCADE, which the session never loads, are invalidated with their parent."""
    ada = await stack.users.add(email="ada@example.com", name="Ada")
    bob = await stack.users.add(email="bob@example.com", name="Bob")
    bobs = await stack.challenges.add(user_id=bob.id, title="Bob's")
    async with stack.sessions() as session, session.begin():
        session.add(
            Evaluation(challenge_id=bobs.id, user_id=ada.id, score=5)
        )  # Ada evaluates Bob's challenge
    await stack.cache.set("bobs-evaluations", [5], tags=[f"challenge:{bobs.id}:evaluations"])
    await stack.cache.set("bob", "cached", tags=[f"user:{bob.id}"])

    async with stack.sessions() as session, session.begin():
        if how == "orm":
            await session.delete(await session.get(User, ada.id))
        else:
            await session.execute(delete(User).where(User.id == ada.id))

    async with stack.sessions() as session:
        assert (
            0 == (await session.execute(select(func.count()).select_from(Evaluation))).scalar_one()
        )
    assert None is await stack.cache.get("bobs-evaluations")
    assert "cached" == await stack.cache.get(
        "bob"
    )  # the evaluation's relation reaches no user but Ada


async def test_a_session_closed_without_rollback_releases_its_marks(stack: Stack) -> None:
    """A session closed with a transaction open (no rollback first) leaves no recorded state behind for its next use."""
    ada = await stack.users.add(email="ada@example.com", name="Ada")
    await stack.users.get(ada.id)

    session = stack.sessions()
    await session.begin()
    (await session.get(User, ada.id)).name = "never"  # type: ignore[union-attr]
    await session.flush()
    assert _INFO_KEY in session.info
    await session.close()  # no rollback() first

    assert _INFO_KEY not in session.info
    assert "Ada" == (await stack.users.get(ada.id)).name  # type: ignore[union-attr]  # still cached


async def test_a_failure_after_marking_is_treated_as_committed(stack: Stack) -> None:
    """If the transaction fails once its tags are marked (the COMMIT's fate unknown), they are invalidated, never restored."""
    ada = await stack.users.add(email="ada@example.com", name="Ada")
    await stack.users.get(ada.id)

    def lost_connection(session: Any) -> None:
        raise ConnectionError("server closed the connection during COMMIT")

    from sqlalchemy import event

    async with stack.sessions() as session:
        event.listen(
            async_event_target(session), "before_commit", lost_connection
        )  # after the hooks'
        await session.begin()
        (await session.get(User, ada.id)).name = "Ada L."
        with pytest.raises(ConnectionError, match="during COMMIT"):
            await session.commit()

    assert None is await stack.cache.get(f"user:{ada.id}", tags=[f"user:{ada.id}"])  # invalidated
