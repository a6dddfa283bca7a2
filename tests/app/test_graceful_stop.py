"""`freshcache serve` stopped by SIGTERM in a burst of writes: every answered write kept, no outbox row left."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pydantic_settings")

from .test_newcomer_path import free_port, wait_healthy

pytestmark = pytest.mark.slow

WRITERS = 4
BEFORE_STOP = 40  # writes answered before SIGTERM, so that the stop lands mid-burst


def start(data: Path, port: int) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRESHCACHE_")}
    env["FRESHCACHE_DATA_DIR"] = str(data)
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


def table(data: Path, statement: str) -> list[Any]:
    with sqlite3.connect(data / "freshcache.db") as connection:
        return connection.execute(statement).fetchall()


def test_sigterm_in_a_burst_of_writes_keeps_every_answered_write(tmp_path: Path) -> None:
    """Each write answered 2xx before a SIGTERM mid-burst is in the database after stop, and no outbox row is left after a restart."""
    data = tmp_path / "data"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = start(data, port)
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

    try:
        wait_healthy(process, base, time.monotonic() + 60)
        writers = [threading.Thread(target=write, args=(i,)) for i in range(WRITERS)]
        for thread in writers:
            thread.start()
        assert enough.wait(60), "the burst of writes did not start"
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    for thread in writers:
        thread.join(30)
    assert process.returncode in (0, -signal.SIGTERM), stderr
    assert "Application shutdown complete" in stderr

    stored = {email for (email,) in table(data, "select email from users")}
    assert set(answered) <= stored, sorted(set(answered) - stored)[:5]
    assert [] == table(data, "select id, tags from freshcache_outbox")

    again = start(data, port)
    try:
        wait_healthy(again, base, time.monotonic() + 60)
        assert [] == table(data, "select id, tags from freshcache_outbox")
    finally:
        again.send_signal(signal.SIGTERM)
        again.communicate(timeout=60)
