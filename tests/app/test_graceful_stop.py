"""`freshcache serve` stopped by SIGTERM in a burst of writes: every answered write kept, no outbox row left unapplied.

On a SQLite file with the memory cache, and on PostgreSQL with Redis (whose cache outlives
the process, so a row left unapplied would be a stale read after the restart).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pydantic_settings")
from sqlalchemy import Engine, create_engine, text

from ..databases import Database
from .test_newcomer_path import call, free_port, wait_healthy

pytestmark = pytest.mark.slow

WRITERS = 4
BEFORE_STOP = 40  # writes answered before SIGTERM, so that the stop lands mid-burst
RELAY_PASS = 30.0  # seconds for the restarted relay to apply the planted row: grace 5 s


@pytest.fixture(params=["sqlite-memory", "postgresql-redis"])
def service(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[dict[str, str], Engine]]:
    """The service's environment, and an engine on its database that reaches past it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRESHCACHE_")}
    env["FRESHCACHE_DATA_DIR"] = str(tmp_path / "data")
    if request.param == "sqlite-memory":
        engine = create_engine(f"sqlite:///{tmp_path / 'data' / 'freshcache.db'}")
    else:
        database: Database = request.getfixturevalue("postgres")
        redis_url: str = request.getfixturevalue("redis_url")
        namespace: str = request.getfixturevalue("namespace")
        env["FRESHCACHE_DATABASE_URL"] = (
            f"{database.async_url}?options=-csearch_path%3D{database.schema}"
        )
        env["FRESHCACHE_CACHE_URL"] = f"{redis_url}?namespace={namespace}"
        engine = database.engine()
    yield env, engine
    engine.dispose()


def start(env: dict[str, str], port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "freshcache.cli", "serve", "--port", str(port), "--no-seed"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def post_user(base: str, email: str) -> int:
    body = json.dumps({"email": email, "name": "Burst"}).encode()
    request = urllib.request.Request(
        f"{base}/api/users", data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def query(engine: Engine, statement: str, **values: Any) -> list[Any]:
    with engine.begin() as connection:
        result = connection.execute(text(statement), values)
        return list(result) if result.returns_rows else []


def plant_unapplied(engine: Engine, user_id: int, name: str) -> str:
    """A rename whose writer died after its commit: the row, fresh (within the grace), not applied."""
    row = uuid.uuid4().hex
    query(engine, "update users set name = :name where id = :id", name=name, id=user_id)
    query(
        engine,
        "insert into freshcache_outbox (id, created_at, tags, entity_types, source) "
        "values (:id, :at, :tags, '[\"user\"]', 'transaction')",
        id=row,
        at=time.time(),
        tags=json.dumps([f"user:{user_id}"]),
    )
    return row


def test_sigterm_in_a_burst_of_writes_keeps_every_answered_write(
    service: tuple[dict[str, str], Engine],
) -> None:
    """Each write answered 2xx before a SIGTERM mid-burst is kept; after a restart the relay applies the row left unapplied, and none is left."""
    env, engine = service
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = start(env, port)
    answered: list[str] = []
    lock = threading.Lock()
    enough = threading.Event()

    def write(writer: int) -> None:
        for n in range(100_000):
            email = f"w{writer}-{n}@example.com"
            try:
                status = post_user(base, email)
            except (urllib.error.URLError, ConnectionError, OSError):
                return  # the server has stopped listening
            if 200 <= status < 300:
                with lock:
                    answered.append(email)
                    if len(answered) >= BEFORE_STOP:
                        enough.set()

    writers = [threading.Thread(target=write, args=(i,)) for i in range(WRITERS)]
    try:
        wait_healthy(process, base, time.monotonic() + 60)
        status, ada = call("POST", f"{base}/api/users", {"email": "ada@x.org", "name": "Ada"})
        assert 201 == status, ada
        user_path = f"{base}/api/users/{ada['id']}"
        assert "Ada" == call("GET", user_path)[1]["name"]  # cached
        for thread in writers:
            thread.start()
        assert enough.wait(60), "the burst of writes did not start"
        # Just before the stop, within the relay's grace: left to the relay after a restart.
        planted = plant_unapplied(engine, ada["id"], "Ada L.")
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    for thread in writers:
        thread.join(30)
    assert process.returncode in (0, -signal.SIGTERM), stderr
    assert "Application shutdown complete" in stderr

    stored = {email for (email,) in query(engine, "select email from users")}
    assert set(answered) <= stored, sorted(set(answered) - stored)[:5]
    # Every answered write's row applied and deleted at the stop; the planted one is left.
    assert [(planted,)] == query(engine, "select id from freshcache_outbox")

    again = start(env, port)
    try:
        wait_healthy(again, base, time.monotonic() + 60)
        deadline = time.monotonic() + RELAY_PASS
        while query(engine, "select id from freshcache_outbox") and time.monotonic() < deadline:
            time.sleep(0.2)  # the restarted relay's pass, in another process
        assert [] == query(engine, "select id from freshcache_outbox")
        relay = call("GET", f"{base}/api/system/metrics/cache")[1]["relay"]
        assert 1 == relay["relayed_rows"]
        assert "Ada L." == call("GET", user_path)[1]["name"]
    finally:
        again.send_signal(signal.SIGTERM)
        again.communicate(timeout=60)
