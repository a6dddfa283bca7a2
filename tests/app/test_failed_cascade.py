"""A delete that cascades over several tables and fails at its last statement leaves nothing behind, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pydantic_settings")
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from freshcache.app import Settings, create_app

from ..databases import Database
from .test_reference_service import challenge, evaluate, read_twice, rows, user

# A real refusal by the database of the outbox's insert, the transaction's last statement
# (after the DELETE and its cascade): SQLite's trigger names no table; PostgreSQL's CHECK
# is a constraint of the outbox. Either is the database's refusal, not the client's.
REFUSE = {
    "sqlite": "create trigger refuse_outbox before insert on freshcache_outbox "
    "begin select raise(abort, 'outbox refused'); end",
    "postgresql": "alter table freshcache_outbox add constraint refuse_outbox check (false) not valid",
}
ALLOW = {
    "sqlite": "drop trigger refuse_outbox",
    "postgresql": "alter table freshcache_outbox drop constraint refuse_outbox",
}


@pytest.fixture(params=["sqlite", "postgresql"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    """The service on a SQLite file and the memory cache, and on PostgreSQL (a schema of its own) and Redis."""
    settings = Settings(data_dir=tmp_path, seed=False)
    if request.param == "postgresql":
        database: Database = request.getfixturevalue("postgres")
        redis_url: str = request.getfixturevalue("redis_url")
        namespace: str = request.getfixturevalue("namespace")
        settings = Settings(
            data_dir=tmp_path,
            seed=False,
            database_url=f"{database.async_url}?options=-csearch_path%3D{database.schema}",
            cache_url=f"{redis_url}?namespace={namespace}",
        )
    with TestClient(create_app(settings)) as client:
        yield client


def dialect(client: TestClient) -> str:
    return client.app.state.service.engine.dialect.name  # type: ignore[attr-defined, no-any-return]


def sql(client: TestClient, statement: str) -> list[Any]:
    """Runs ``statement`` on the service's database, past the service and its cache."""
    url = client.app.state.service.settings.database_url  # type: ignore[attr-defined]
    engine = create_engine(url.replace("+aiosqlite", ""))
    try:
        with engine.begin() as connection:
            result = connection.execute(text(statement))
            return list(result) if result.returns_rows else []
    finally:
        engine.dispose()


def drained(client: TestClient) -> list[Any]:
    """The outbox's row count once the relay has deleted the rows it applied (a pass is 0.5 s)."""
    deadline = time.monotonic() + 30
    while (count := sql(client, "select count(*) from freshcache_outbox")) != [(0,)]:
        assert time.monotonic() < deadline, f"the relay left {count} outbox rows"
        time.sleep(0.1)
    return count


@pytest.mark.parametrize("target", ["user", "challenge"])
def test_a_cascade_failing_at_its_outbox_row_rolls_back_and_keeps_the_cache_serving(
    client: TestClient, target: str
) -> None:
    """A cascading delete whose outbox insert the database refuses changes no row, leaves reads correct and cached, and a retry then deletes."""
    ada = user(client)
    sort = challenge(client, ada["id"])
    evaluate(client, sort["id"], 70)
    reads = [
        f"/api/users/{ada['id']}",
        f"/api/users/{ada['id']}/challenges",
        f"/api/users/{ada['id']}/progress",
        f"/api/challenges/{sort['id']}",
        f"/api/challenges/{sort['id']}/evaluations",
        "/api/leaderboard",
    ]
    cached = {path: read_twice(client, path) for path in reads}
    before = rows(client)
    outbox = drained(client)
    sql(client, REFUSE[dialect(client)])
    path = f"/api/users/{ada['id']}" if target == "user" else f"/api/challenges/{sort['id']}"

    failed = client.delete(path)

    assert 503 == failed.status_code, (
        failed.text
    )  # the database's refusal, not the client's conflict
    assert before == rows(client)
    assert outbox == sql(client, "select count(*) from freshcache_outbox")
    for read in reads:  # the same answers, and cached again: nothing left pending or stale
        assert cached[read] == read_twice(client, read), read

    sql(client, ALLOW[dialect(client)])
    assert 204 == client.delete(path).status_code
    assert 404 == client.get(path).status_code
    assert 404 == client.get(f"/api/challenges/{sort['id']}").status_code
    assert [] == rows(client)["evaluations"]
