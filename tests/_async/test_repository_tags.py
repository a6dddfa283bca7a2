"""Keys of every kind commit and invalidate on PostgreSQL and Redis, and repositories read the tags rules write."""

from __future__ import annotations

import datetime
import decimal
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import ForeignKey, MetaData, Numeric, String, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from freshcache import AsyncCache, AsyncInvalidationManager, ConfigurationError, Rules
from freshcache.integrations.sqlalchemy import (
    AsyncBaseRepository,
    SessionInvalidation,
    outbox_table,
    rules_from_models,
)
from freshcache.integrations.sqlalchemy._orm import AsyncSession, async_sessionmaker

from ..databases import Database
from ..integrations.models import Base as ReferenceBase
from ..integrations.models import Challenge, User
from ..integrations.support import async_create_tables


class Base(DeclarativeBase):
    metadata = MetaData()


class Account(Base):
    """Keyed by a UUID."""

    __tablename__ = "accounts"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))


class Page(Base):
    """Keyed by free text: spaces, accents, '%', braces, globs and colons."""

    __tablename__ = "pages"
    slug: Mapped[str] = mapped_column(String(1000), primary_key=True)
    account_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE")
    )
    title: Mapped[str] = mapped_column(String(200))


class Entry(Base):
    """Keyed by a date, a Numeric and text together."""

    __tablename__ = "entries"
    day: Mapped[datetime.date] = mapped_column(primary_key=True)
    amount: Mapped[decimal.Decimal] = mapped_column(Numeric(10, 2), primary_key=True)
    label: Mapped[str] = mapped_column(String(100), primary_key=True)
    note: Mapped[str] = mapped_column(String(100))


class Tally(Base):
    """Keyed by an int that callers may give as text."""

    __tablename__ = "tallies"
    id: Mapped[int] = mapped_column(primary_key=True)
    count: Mapped[int] = mapped_column(default=0)


OUTBOX = outbox_table(Base.metadata)
PICKLE_KEY = b"freshcache tests: a pickle key"
SLUGS = ["Zoë Ünal's page", "50% {x}*?[a]:b", "中文 页面", "a" * 40 + " é" * 200]


class Accounts(AsyncBaseRepository[Account]):
    model = Account


class Pages(AsyncBaseRepository[Page]):
    model = Page


class Entries(AsyncBaseRepository[Entry]):
    model = Entry


class Tallies(AsyncBaseRepository[Tally]):
    model = Tally


@dataclass
class Stack:
    cache: AsyncCache
    manager: AsyncInvalidationManager
    sessions: async_sessionmaker[AsyncSession]
    engine: Any


@pytest.fixture
async def stack(postgres: Database, redis_url: str, namespace: str) -> AsyncIterator[Stack]:
    engine = postgres.async_engine()
    await async_create_tables(engine, Base.metadata)
    # Pickled: the rows hold dates and Decimals, which are the keys' business here, not JSON's.
    cache = AsyncCache.from_url(
        f"{redis_url}?namespace={namespace}", serializer="pickle", pickle_key=PICKLE_KEY
    )
    manager = AsyncInvalidationManager(cache, rules_from_models([Account, Page, Entry, Tally]))
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    SessionInvalidation(manager, mode="strict", outbox=OUTBOX).install(sessions)
    yield Stack(cache, manager, sessions, engine)
    await manager.aclose()
    await cache.aclose()
    await engine.dispose()


async def test_uuid_keys_commit_and_invalidate(stack: Stack) -> None:
    """A UUID-keyed entity commits through a hooked session, and its cached "not found" and value are invalidated."""
    accounts = Accounts(stack.sessions, stack.cache)
    key = uuid.uuid4()
    assert None is await accounts.get(key)
    async with stack.sessions() as session, session.begin():
        session.add(Account(id=key, name="Ada"))
    account = await accounts.get(key)
    assert account is not None
    assert "Ada" == account.name
    async with stack.sessions() as session, session.begin():
        stored = await session.get(Account, key)
        assert stored is not None
        stored.name = "Grace"
    account = await accounts.get(str(key).upper())  # the same entity and tag, given as text
    assert account is not None
    assert "Grace" == account.name
    assert accounts.tag_for(key) == accounts.tag_for(str(key).upper())
    async with stack.engine.begin() as connection:  # past the hooks: the manager is told
        await connection.execute(
            text("UPDATE accounts SET name = 'Hedy' WHERE id = :id"), {"id": key}
        )
    await stack.manager.invalidate_entity("account", old={"id": str(key).upper(), "name": "x"})
    assert "Hedy" == getattr(await accounts.get(key), "name", None)


@pytest.mark.parametrize("slug", SLUGS, ids=["accents", "syntax", "cjk", "long"])
async def test_text_keys_commit_and_invalidate(stack: Stack, slug: str) -> None:
    """A text key with spaces, non-ASCII, '%', braces or globs commits, and the entity and its parent's list are invalidated."""
    accounts, pages = Accounts(stack.sessions, stack.cache), Pages(stack.sessions, stack.cache)
    account = await accounts.add(id=uuid.uuid4(), name="Ada")
    assert None is await pages.get(slug)
    assert [] == await pages.list(account_id=account.id)
    async with stack.sessions() as session, session.begin():
        session.add(Page(slug=slug, account_id=account.id, title="first"))
    page = await pages.get(slug)
    assert page is not None
    assert "first" == page.title
    assert [slug] == [each.slug for each in await pages.list(account_id=str(account.id))]
    await pages.update(slug, title="second")
    page = await pages.get(slug)
    assert page is not None
    assert "second" == page.title
    assert await pages.delete(slug)
    assert None is await pages.get(slug)
    assert [] == await pages.list(account_id=account.id)


async def test_the_managers_invalidation_reaches_the_repositorys_entry(stack: Stack) -> None:
    """invalidate_entity, given the values a raw write changed, formats the tag the repository read."""
    pages = Pages(stack.sessions, stack.cache)
    slug = SLUGS[1]
    await pages.add(slug=slug, title="first")
    assert "first" == getattr(await pages.get(slug), "title", None)
    async with stack.engine.begin() as connection:  # past the hooks: the cache cannot know
        await connection.execute(
            text("UPDATE pages SET title = 'second' WHERE slug = :slug"), {"slug": slug}
        )
    assert "first" == getattr(await pages.get(slug), "title", None)
    old = {"slug": slug, "account_id": None, "title": "first"}
    await stack.manager.invalidate_entity("page", old=old, new={"title": "second"})
    assert "second" == getattr(await pages.get(slug), "title", None)


async def test_composite_keys_of_dates_decimals_and_text_commit_and_invalidate(
    stack: Stack,
) -> None:
    """A (date, Numeric, text) key commits, and the entity read by equal values in any form is invalidated by the hooks."""
    entries = Entries(stack.sessions, stack.cache)
    day, label = datetime.date(2024, 1, 5), "Zoë: a b"
    assert None is await entries.get((day, decimal.Decimal("1.5"), label))
    async with stack.sessions() as session, session.begin():
        session.add(Entry(day=day, amount=decimal.Decimal("1.50"), label=label, note="first"))
    same = [(day, decimal.Decimal("1.5"), label), ("2024-01-05", "1.50", label)]
    for key in same:
        assert "first" == getattr(await entries.get(key), "note", None)
    assert 1 == len({entries.tag_for(key) for key in same})
    async with stack.sessions() as session, session.begin():
        stored = await session.get(Entry, (day, decimal.Decimal("1.50"), label))
        assert stored is not None
        stored.note = "second"
    for key in same:
        assert "second" == getattr(await entries.get(key), "note", None)


async def test_an_int_key_given_as_text_is_the_same_entity(stack: Stack) -> None:
    """An int id given as "5" queries PostgreSQL as 5 and shares the entry that the hooks invalidate."""
    tallies = Tallies(stack.sessions, stack.cache)
    await tallies.add(id=5, count=1)
    assert 1 == getattr(await tallies.get("5"), "count", None)
    await tallies.update(5, count=2)
    assert 2 == getattr(await tallies.get("5"), "count", None)
    assert tallies.tag_for(5) == tallies.tag_for("5") == "tally:5"


async def test_lists_by_a_parent_not_given_to_rules_from_models_are_invalidated(
    postgres: Database, redis_url: str, namespace: str
) -> None:
    """With rules derived from the children alone, a repository's per-parent list is invalidated by a new child."""
    engine = postgres.async_engine()
    await async_create_tables(engine, ReferenceBase.metadata)
    cache = AsyncCache.from_url(f"{redis_url}?namespace={namespace}")
    manager = AsyncInvalidationManager(cache, rules_from_models([Challenge]))
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    SessionInvalidation(manager).install(sessions)

    class Challenges(AsyncBaseRepository[Challenge]):
        model = Challenge

    challenges = Challenges(sessions, cache)
    try:
        async with sessions() as session, session.begin():
            session.add(User(id=1, email="ada@example.com", name="Ada"))
        assert [] == await challenges.list(user_id=1)
        async with sessions() as session, session.begin():
            session.add(Challenge(id=7, user_id=1, title="first"))
        assert [7] == [each.id for each in await challenges.list(user_id=1)]
    finally:
        await manager.aclose()
        await cache.aclose()
        await engine.dispose()


async def test_a_repository_whose_tags_no_rule_writes_fails_at_start(
    postgres: Database, redis_url: str, namespace: str
) -> None:
    """Hooks whose rules lack a repository's list tag make the repository's construction fail, before any read."""
    engine = postgres.async_engine()
    cache = AsyncCache.from_url(f"{redis_url}?namespace={namespace}")
    rules = Rules().entity("page", tags=["page:{slug}", "page"])
    manager = AsyncInvalidationManager(cache, rules)
    sessions = async_sessionmaker(engine)
    SessionInvalidation(manager).install(sessions)
    try:
        with pytest.raises(
            ConfigurationError, match=r"'account:\{account_id\}:pages'.*rules_from_models"
        ):
            Pages(sessions, cache)
    finally:
        await manager.aclose()
        await cache.aclose()
        await engine.dispose()


async def test_list_after_a_key_pages_by_keyset_and_sees_a_new_row(stack: Stack) -> None:
    """``list(after=key)`` answers the entities whose key sorts after it, single or composite, and a cached page sees a row inserted into it."""
    tallies = Tallies(stack.sessions, stack.cache)
    for id in (2, 4, 6, 8):
        await tallies.add(id=id)
    assert [6, 8] == [each.id for each in await tallies.list(after=4)]
    assert [6] == [each.id for each in await tallies.list(after="4", limit=1)]
    await tallies.add(id=5)
    assert [5, 6] == [each.id for each in await tallies.list(after=4, limit=2)]
    entries = Entries(stack.sessions, stack.cache)
    day = datetime.date(2024, 1, 5)
    for amount, label in (("1.00", "b"), ("1.00", "c"), ("2.00", "a")):
        await entries.add(day=day, amount=decimal.Decimal(amount), label=label, note="")
    after = (day, decimal.Decimal("1.00"), "b")
    assert [("1.00", "c"), ("2.00", "a")] == [
        (str(each.amount), each.label) for each in await entries.list(after=after)
    ]
