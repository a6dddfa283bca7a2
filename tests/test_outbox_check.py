"""A missing outbox table is a ConfigurationError saying how to create it, never a raw database error at a write."""

from __future__ import annotations

import pytest
from sqlalchemy import MetaData, create_engine, func, make_url, select
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import sessionmaker

from freshcache import (
    AsyncCache,
    AsyncInvalidationManager,
    Cache,
    ConfigurationError,
    InvalidationManager,
)
from freshcache.integrations.sqlalchemy import SessionInvalidation, outbox_table, rules_from_models

from .databases import Database
from .integrations.models import MODELS, Base, User
from .settings import DATABASE_URL

OUTBOX = outbox_table(MetaData())
MISSING = r"the outbox table 'freshcache_outbox' does not exist in 'test': create it with outbox_table\(metadata\)\.create\(engine\)"


def test_install_on_a_bound_sessionmaker_checks_the_table(postgres: Database) -> None:
    """install() on a sessionmaker bound to an engine refuses a database without the outbox table, with its DDL."""
    engine = postgres.engine()
    manager = InvalidationManager(Cache.from_url("memory://"), rules_from_models(MODELS))

    with pytest.raises(ConfigurationError, match=MISSING) as raised:
        SessionInvalidation(manager, outbox=OUTBOX).install(sessionmaker(engine))

    assert "CREATE TABLE freshcache_outbox (" in str(raised.value)
    assert "CREATE INDEX ix_freshcache_outbox_created_at" in str(raised.value)
    OUTBOX.create(engine)
    SessionInvalidation(manager, outbox=OUTBOX).install(sessionmaker(engine))
    manager.close()
    engine.dispose()


def test_install_while_the_database_is_down_leaves_the_check_to_the_first_commit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An application may start before its database: install() logs that it could not check, and does not fail."""
    engine = create_engine(make_url(DATABASE_URL).set(port=1))
    manager = InvalidationManager(Cache.from_url("memory://"), rules_from_models(MODELS))

    SessionInvalidation(manager, outbox=OUTBOX).install(sessionmaker(engine))

    assert ["could not check the outbox table 'freshcache_outbox' now"] == [
        record.getMessage().split(":")[0] for record in caplog.records
    ]
    manager.close()
    engine.dispose()


def test_an_unbound_sessionmaker_is_checked_at_its_first_commit(postgres: Database) -> None:
    """Without a bind to check at install(), the first commit raises ConfigurationError before writing anything."""
    engine = postgres.engine()
    Base.metadata.create_all(engine, tables=[User.__table__])  # type: ignore[list-item]
    manager = InvalidationManager(Cache.from_url("memory://"), rules_from_models(MODELS))
    sessions = sessionmaker()
    SessionInvalidation(manager, outbox=OUTBOX).install(sessions)

    with sessions(bind=engine) as session:
        session.add(User(id=1, email="ada@example.com", name="Ada"))
        with pytest.raises(ConfigurationError, match=MISSING):
            session.commit()

    with engine.connect() as connection:
        assert 0 == connection.scalar(select(func.count()).select_from(User.__table__))
    manager.close()
    engine.dispose()


async def test_an_async_sessionmaker_is_checked_at_its_first_commit(postgres: Database) -> None:
    """install() cannot wait under asyncio: the first commit checks, refuses without writing, and passes once the table exists."""
    engine = postgres.async_engine()
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all, tables=[User.__table__])
    manager = AsyncInvalidationManager(AsyncCache.from_url("memory://"), rules_from_models(MODELS))
    sessions = async_sessionmaker(engine)
    SessionInvalidation(manager, outbox=OUTBOX).install(sessions)

    with pytest.raises(ConfigurationError, match=MISSING):
        async with sessions.begin() as session:
            session.add(User(id=1, email="ada@example.com", name="Ada"))

    async with engine.begin() as connection:
        assert 0 == await connection.scalar(select(func.count()).select_from(User.__table__))
        await connection.run_sync(OUTBOX.create)
    async with sessions.begin() as session:
        session.add(User(id=1, email="ada@example.com", name="Ada"))
    async with engine.connect() as connection:
        assert 1 == await connection.scalar(select(func.count()).select_from(OUTBOX))
    await manager.aclose()
    await engine.dispose()
