"""Two service processes on one PostgreSQL and one Redis: a write answered by one is read fresh by the other."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pydantic_settings")

from ..databases import Database

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def call(base: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        base + path, data=data, method=method, headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


class Server:
    def __init__(self, environment: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log.open("wb")
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "uvicorn", "freshcache.app:create_app", "--factory"),
                *("--host", "127.0.0.1", "--port", str(self.port)),
            ],
            env=environment,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_healthy(self, timeout: float = 30.0) -> None:
        # Polling a process we do not control is the only way to see it come up.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the service exited with {self.process.returncode}")
            try:
                if call(self.base, "GET", "/api/system/health")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError("the service did not become healthy")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=15)
        self.log.close()


@pytest.fixture
def servers(
    postgres: Database, redis_url: str, namespace: str, tmp_path: Path
) -> Iterator[tuple[Server, Server]]:
    environment = {
        **os.environ,
        "FRESHCACHE_DATA_DIR": str(tmp_path),
        "FRESHCACHE_DATABASE_URL": f"{postgres.async_url}?options=-csearch_path%3D{postgres.schema}",
        "FRESHCACHE_CACHE_URL": f"{redis_url}?namespace={namespace}",
        "FRESHCACHE_SEED": "false",
    }
    first = Server(environment, tmp_path / "first.log")
    started = [first]
    try:
        first.wait_healthy()  # the first creates the schema; the second finds it
        second = Server(environment, tmp_path / "second.log")
        started.append(second)
        second.wait_healthy()
        yield first, second
    finally:
        for server in started:
            server.stop()


def test_a_write_on_one_process_is_read_fresh_on_the_other(servers: tuple[Server, Server]) -> None:
    """Every cached route read on one process shows a write the other answered, a moved challenge included."""
    one, two = (server.base for server in servers)
    status, ada = call(one, "POST", "/api/users", {"email": "ada@example.com", "name": "Ada"})
    assert 201 == status
    status, bob = call(one, "POST", "/api/users", {"email": "bob@example.com", "name": "Bob"})
    user_path = f"/api/users/{ada['id']}"
    assert "Ada" == call(two, "GET", user_path)[1]["name"]
    assert 200 == call(one, "PATCH", user_path, {"name": "Ada L."})[0]
    assert "Ada L." == call(two, "GET", user_path)[1]["name"]

    status, task = call(one, "POST", "/api/challenges", {"user_id": ada["id"], "title": "Sort"})
    ada_list, bob_list = f"/api/users/{ada['id']}/challenges", f"/api/users/{bob['id']}/challenges"
    assert [task["id"]] == [c["id"] for c in call(two, "GET", ada_list)[1]]
    assert [] == call(two, "GET", bob_list)[1]
    assert 200 == call(one, "PATCH", f"/api/challenges/{task['id']}", {"user_id": bob["id"]})[0]
    assert [] == call(two, "GET", ada_list)[1]
    assert [task["id"]] == [c["id"] for c in call(two, "GET", bob_list)[1]]

    progress = f"/api/users/{bob['id']}/progress"
    assert 0 == call(two, "GET", progress)[1]["evaluations"]
    assert [] == call(two, "GET", "/api/leaderboard")[1]
    assert 201 == call(one, "POST", f"/api/challenges/{task['id']}/evaluations", {"score": 90})[0]
    assert 1 == call(two, "GET", progress)[1]["evaluations"]
    assert ["Bob"] == [row["name"] for row in call(two, "GET", "/api/leaderboard")[1]]
    assert 200 == call(one, "PATCH", f"/api/users/{bob['id']}", {"name": "Robert"})[0]
    assert ["Robert"] == [row["name"] for row in call(two, "GET", "/api/leaderboard")[1]]
