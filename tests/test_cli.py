"""The freshcache command, run as a user runs it."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import MetaData, create_engine, func, insert, select

from freshcache import Cache
from freshcache.integrations.sqlalchemy import outbox_table
from freshcache.integrations.sqlalchemy._outbox import outbox_row


def test_relay_once_applies_and_deletes_rows_left_behind(
    tmp_path: Path, redis_url: str, namespace: str
) -> None:
    """`freshcache relay --once` invalidates the tags of stale outbox rows and deletes them, leaving fresh rows to their writers."""
    database_url = f"sqlite:///{tmp_path / 'app.db'}"
    cache_url = f"{redis_url}?namespace={namespace}"
    engine = create_engine(database_url)
    outbox = outbox_table(MetaData())
    outbox.metadata.create_all(engine)
    stale = outbox_row(["user:1"], ["user"])
    stale["created_at"] = time.time() - 60
    fresh = outbox_row(["user:2"], ["user"])
    with engine.begin() as connection:
        connection.execute(insert(outbox), [stale, fresh])
    cache = Cache.from_url(cache_url)
    cache.set("user:1", "stale", tags=["user:1"])
    cache.set("user:2", "being written", tags=["user:2"])

    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "freshcache.cli",
            "relay",
            "--once",
            "--grace",
            "30",  # the fresh row stays fresh however slowly the command starts
            "--database-url",
            database_url,
            "--cache-url",
            cache_url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert (0, "relayed 1 rows; 1 pending") == (run.returncode, run.stdout.split(", oldest")[0])
    assert None is cache.get("user:1")
    assert "being written" == cache.get("user:2")
    with engine.connect() as connection:
        assert 1 == connection.execute(select(func.count()).select_from(outbox)).scalar_one()
    cache.close()
    engine.dispose()


def test_relay_needs_its_urls() -> None:
    """Without a database or cache URL the command says which is missing and exits non-zero."""
    run = subprocess.run(
        [sys.executable, "-m", "freshcache.cli", "relay", "--once"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )

    assert 2 == run.returncode
    assert "--database-url" in run.stderr
