"""Two service processes on one PostgreSQL: one relay leads; killed, the other takes over and applies what was left."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pydantic_settings")
from sqlalchemy import Engine, text

from ..databases import Database
from .test_two_processes import Server, call

pytestmark = pytest.mark.slow

TAKEOVER = 10.0  # seconds from the leader's death to its row applied: the relay's pass is 0.5 s


@pytest.fixture
def database(postgres: Database) -> Iterator[Engine]:
    engine = postgres.engine()
    yield engine
    engine.dispose()


@pytest.fixture
def servers(
    postgres: Database, redis_url: str, namespace: str, tmp_path: Path
) -> Iterator[list[Server]]:
    environment = {
        **os.environ,
        "FRESHCACHE_DATA_DIR": str(tmp_path),
        "FRESHCACHE_DATABASE_URL": f"{postgres.async_url}?options=-csearch_path%3D{postgres.schema}",
        "FRESHCACHE_CACHE_URL": f"{redis_url}?namespace={namespace}",
        "FRESHCACHE_SEED": "false",
    }
    started = [Server(environment, tmp_path / "first.log")]
    try:
        started[0].wait_healthy(90)  # the first creates the schema; the second finds it
        started.append(Server(environment, tmp_path / "second.log"))
        started[1].wait_healthy(90)
        yield started
    finally:
        for server in started:
            server.stop()


def relay_stats(server: Server) -> dict[str, Any]:
    return call(server.base, "GET", "/api/system/metrics/cache")[1]["relay"] or {}


def eventually(check: Callable[[], Any], within: float, what: str) -> Any:
    """Polls ``check`` (state inside other processes) until it answers truthy."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        answer = check()
        if answer:
            return answer
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {within} s")


def plant(database: Engine, user_id: int, name: str) -> None:
    """A rename past the service, with the outbox row of a writer that died before applying it.

    The row is 30 s old: past the relay's grace (5 s), within a standby's (60 s), so only
    the leader may apply it.
    """
    with database.begin() as connection:
        connection.execute(
            text("update users set name = :name where id = :id"), {"name": name, "id": user_id}
        )
        connection.execute(
            text(
                "insert into freshcache_outbox (id, created_at, tags, entity_types, source) "
                "values (:id, :at, :tags, '[\"user\"]', 'transaction')"
            ),
            {
                "id": uuid.uuid4().hex,
                "at": time.time() - 30,
                "tags": json.dumps([f"user:{user_id}"]),
            },
        )


def outbox_rows(database: Engine) -> int:
    with database.connect() as connection:
        return int(connection.execute(text("select count(*) from freshcache_outbox")).scalar_one())


def test_one_relay_leads_and_the_other_takes_over_when_it_is_killed(
    servers: list[Server], database: Engine
) -> None:
    """Exactly one process relays a planted row; after SIGKILL of that one, the other leads and applies the next within the bound."""
    eventually(
        lambda: sorted(relay_stats(server).get("relay_leader", -1) for server in servers) == [0, 1],
        15,
        "one leader and one standby",
    )
    leader, standby = sorted(servers, key=lambda server: -relay_stats(server)["relay_leader"])
    status, ada = call(
        leader.base, "POST", "/api/users", {"email": "ada@example.com", "name": "Ada"}
    )
    assert 201 == status
    path = f"/api/users/{ada['id']}"
    assert "Ada" == call(standby.base, "GET", path)[1]["name"]  # cached in the shared Redis

    plant(database, ada["id"], "Ada L.")
    eventually(lambda: outbox_rows(database) == 0, TAKEOVER, "the leader applies the row")
    assert "Ada L." == call(standby.base, "GET", path)[1]["name"]
    eventually(lambda: relay_stats(leader)["relayed_rows"] == 1, 5, "the leader counts it")
    assert (0, 0) == (relay_stats(standby)["relayed_rows"], relay_stats(standby)["relay_leader"])

    leader.process.send_signal(signal.SIGKILL)
    leader.process.wait(10)
    killed = time.monotonic()
    plant(database, ada["id"], "Ada Lovelace")
    eventually(lambda: outbox_rows(database) == 0, TAKEOVER, "the standby takes over and applies")
    took = time.monotonic() - killed

    assert took < TAKEOVER
    assert "Ada Lovelace" == call(standby.base, "GET", path)[1]["name"]
    stats = eventually(
        lambda: relay_stats(standby)["relayed_rows"] == 1 and relay_stats(standby), 5, "counted"
    )
    assert 1 == stats["relay_leader"]
