"""Helpers that the async SQLAlchemy tests use and unasync maps onto their sync twins."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, MetaData, Table
from sqlalchemy.ext.asyncio import AsyncEngine

from .models import Base


async def async_create_tables(engine: AsyncEngine, metadata: MetaData = Base.metadata) -> None:
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)


def create_tables(engine: Engine, metadata: MetaData = Base.metadata) -> None:
    metadata.create_all(engine)


async def async_count_rows(engine: AsyncEngine, table: Table) -> int:
    from sqlalchemy import func, select

    async with engine.connect() as connection:
        return int((await connection.execute(select(func.count()).select_from(table))).scalar_one())


def count_rows(engine: Engine, table: Table) -> int:
    from sqlalchemy import func, select

    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


def async_event_target(session: Any) -> Any:
    """Where to listen for a session's events: an AsyncSession's sync session."""
    return session.sync_session


def event_target(session: Any) -> Any:
    return session
