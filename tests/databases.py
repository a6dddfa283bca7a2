"""Databases for the SQLAlchemy tests: SQLite in a temporary file, PostgreSQL in a schema of the test's own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from .settings import DATABASE_URL, REQUIRE_SERVICES


@dataclass
class Database:
    """Where a test's tables live, and engines on it (sync and async) that reach only them."""

    kind: str
    sync_url: str
    async_url: str
    connect_args: dict[str, Any] = field(default_factory=dict)
    schema: str | None = None

    def engine(self, **options: Any) -> Engine:
        engine = create_engine(self.sync_url, connect_args=self.connect_args, **options)
        self._configure(engine)
        return engine

    def async_engine(self, **options: Any) -> AsyncEngine:
        engine = create_async_engine(self.async_url, connect_args=self.connect_args, **options)
        self._configure(engine.sync_engine)
        return engine

    def _configure(self, engine: Engine) -> None:
        if self.kind == "sqlite":
            # SQLite enforces foreign keys (and their ON DELETE actions) only when asked.
            event.listen(engine, "connect", _enforce_foreign_keys)


def _enforce_foreign_keys(connection: Any, record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _postgres_problem() -> str | None:
    try:
        engine = create_engine(DATABASE_URL, connect_args={"connect_timeout": 2})
        with engine.connect() as connection:
            connection.execute(text("select 1"))
        engine.dispose()
    except Exception as exc:
        return f"PostgreSQL at {DATABASE_URL} does not answer: {exc}"
    return None


@pytest.fixture
def postgres(request: pytest.FixtureRequest) -> Iterator[Database]:
    """PostgreSQL, in a schema created for this test and dropped after it."""
    problem = _postgres_problem()
    if problem is not None:
        if REQUIRE_SERVICES:
            pytest.fail(f"{problem}, and FRESHCACHE_REQUIRE_SERVICES=1")
        pytest.skip(problem)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(DATABASE_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'create schema "{schema}"'))
    try:
        yield Database(
            "postgresql",
            DATABASE_URL,
            DATABASE_URL,
            connect_args={"options": f"-csearch_path={schema}"},
            schema=schema,
        )
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'drop schema "{schema}" cascade'))
        admin.dispose()


@pytest.fixture
def sqlite(tmp_path: Path) -> Database:
    """SQLite in a file of this test's own (the embedded default)."""
    path = tmp_path / "test.db"
    return Database("sqlite", f"sqlite:///{path}", f"sqlite+aiosqlite:///{path}")


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> Database:
    """Each test on SQLite and on the real PostgreSQL."""
    db: Database = request.getfixturevalue("sqlite" if request.param == "sqlite" else "postgres")
    return db
