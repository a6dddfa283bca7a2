"""`freshcache seed`: a generated data set in bulk, with progress bars; a database with rows is refused
unless told; a running service's cached reads stay fresh while it loads."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("pydantic_settings")
from fastapi.testclient import TestClient

from freshcache.app import Settings, create_app
from freshcache.app import seed as seeding
from freshcache.app.seed import Sizes
from freshcache.cli import main
from freshcache.cli.seed import load

from ..databases import Database
from .test_reference_service import challenge, client, evaluate, read_twice, rows, user

__all__ = ["client"]  # the fixture, on SQLite with memory and on PostgreSQL with Redis


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def freshcache(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., Run]:
    """``freshcache ARGS`` as the command runs it, in this process, on the SQLite file under a directory."""

    def run(data_dir: Path, *args: str) -> Run:
        monkeypatch.setenv("FRESHCACHE_DATA_DIR", str(data_dir))
        monkeypatch.delenv("FRESHCACHE_DATABASE_URL", raising=False)
        monkeypatch.delenv("FRESHCACHE_CACHE_URL", raising=False)
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return Run(code, out, err)

    return run


def table_counts(data_dir: Path) -> dict[str, int]:
    import sqlite3

    with sqlite3.connect(data_dir / "freshcache.db") as connection:
        return {
            table: connection.execute(f"select count(*) from {table}").fetchone()[0]
            for table in ("users", "challenges", "evaluations")
        }


def test_seed_writes_the_sizes_asked_with_a_bar_per_table(
    freshcache: Callable[..., Run], tmp_path: Path
) -> None:
    """`seed --users 30 --challenges 90 --evaluations 300` writes exactly those rows, each evaluation
    scored for its challenge's user, and shows a finished bar per table."""
    run = freshcache(
        tmp_path, "seed", "--users", "30", "--challenges", "90", "--evaluations", "300"
    )
    assert 0 == run.returncode, run.stderr
    assert {"users": 30, "challenges": 90, "evaluations": 300} == table_counts(tmp_path)
    for bar in ("users", "30/30", "challenges", "90/90", "evaluations", "300/300"):
        assert bar in run.stderr
    import sqlite3

    with sqlite3.connect(tmp_path / "freshcache.db") as connection:
        mismatched = connection.execute(
            "select count(*) from evaluations e join challenges c on c.id = e.challenge_id"
            " where c.user_id != e.user_id"
        ).fetchone()[0]
    assert 0 == mismatched


def test_a_database_with_rows_is_refused_unless_append_or_reset(
    freshcache: Callable[..., Run], tmp_path: Path
) -> None:
    """A second seed is refused in one line naming --append and --reset, changing nothing; --append
    adds beside the rows, --reset replaces them."""
    assert 0 == freshcache(tmp_path, "seed", "--users", "3").returncode
    before = table_counts(tmp_path)
    refused = freshcache(tmp_path, "seed", "--users", "3")
    assert 2 == refused.returncode
    lines = refused.stderr.strip().splitlines()
    assert 1 == len(lines), refused.stderr
    assert "already holds 3 users" in lines[0]
    assert "--append" in lines[0]
    assert "--reset" in lines[0]
    assert before == table_counts(tmp_path)
    assert 0 == freshcache(tmp_path, "seed", "--users", "2", "--append").returncode
    assert before["users"] + 2 == table_counts(tmp_path)["users"]
    reset = freshcache(
        tmp_path, "seed", "--users", "1", "--challenges", "1", "--evaluations", "1", "--reset"
    )
    assert 0 == reset.returncode, reset.stderr
    assert {"users": 1, "challenges": 1, "evaluations": 1} == table_counts(tmp_path)


MISUSE = [
    (["--append", "--reset"], "cannot be combined"),
    (["--users", "0", "--challenges", "1"], "challenges"),
    (["--users", "-1"], "users"),
    (["--database-url", "sqlite:///x.db"], "async driver"),
]


def test_seed_misuse_is_one_line_exit_2(freshcache: Callable[..., Run], tmp_path: Path) -> None:
    """Options that cannot go together, sizes that cannot be, or a sync database driver: one line, exit 2."""
    for args, expected in MISUSE:
        run = freshcache(tmp_path, "seed", *args)
        assert 2 == run.returncode, args
        assert expected in run.stderr.strip().splitlines()[-1], args
        assert "Traceback" not in run.stderr


def test_a_reset_and_a_load_leave_a_running_services_cache_fresh(
    postgres: Database, redis_url: str, namespace: str, tmp_path: Path
) -> None:
    """On PostgreSQL (COPY) and Redis, a service's cached user, progress, list and leaderboard are
    fresh after a reset and a load under it."""
    settings = Settings(
        data_dir=tmp_path,
        seed=False,
        database_url=f"{postgres.async_url}?options=-csearch_path%3D{postgres.schema}",
        cache_url=f"{redis_url}?namespace={namespace}",
    )
    with TestClient(create_app(settings)) as client:
        ada = user(client)
        evaluate(client, challenge(client, ada["id"])["id"], 10)
        paths = [
            f"/api/users/{ada['id']}",
            f"/api/users/{ada['id']}/progress",
            f"/api/users/{ada['id']}/challenges",
            "/api/leaderboard",
            f"/api/users/{ada['id'] + 1}",
        ]
        for path in paths[:-1]:
            read_twice(client, path)
        assert 404 == client.get(paths[-1]).status_code
        asyncio.run(load(settings, Sizes(users=5, challenges=8, evaluations=20), existing="reset"))
        seeded = rows(client)
        assert (5, 8, 20) == tuple(len(seeded[table]) for table in seeded)
        board = read_twice(client, "/api/leaderboard")
        assert ada["id"] not in [row["user_id"] for row in board]
        assert 404 == client.get(paths[0]).status_code
        new = seeded["users"][0].id
        evaluations = [row for row in seeded["evaluations"] if row.user_id == new]
        progress = read_twice(client, f"/api/users/{new}/progress")
        assert len(evaluations) == progress["evaluations"]
        assert len([c for c in seeded["challenges"] if c.user_id == new]) == len(
            read_twice(client, f"/api/users/{new}/challenges?limit=100")
        )


def test_reset_and_seed_under_the_service_leave_every_cached_read_fresh(
    client: TestClient,
) -> None:
    """On SQLite, where a reset reuses ids, and on PostgreSQL: a cached user, progress, list and
    leaderboard read after the service's own reset and seed show the new rows."""
    ada = user(client)
    evaluate(client, challenge(client, ada["id"])["id"], 10)
    paths = [f"/api/users/{ada['id']}/{what}" for what in ("progress", "challenges")]
    for path in [*paths, "/api/leaderboard"]:
        read_twice(client, path)
    users = client.app.state.service.users  # type: ignore[attr-defined]
    client.portal.call(seeding.reset, users)  # type: ignore[union-attr]
    client.portal.call(seeding.seed, users, Sizes(users=3, challenges=9, evaluations=40))  # type: ignore[union-attr]
    seeded = rows(client)
    for each in seeded["users"]:
        progress = read_twice(client, f"/api/users/{each.id}/progress")
        assert (
            sum(1 for e in seeded["evaluations"] if e.user_id == each.id) == progress["evaluations"]
        )
        listed = read_twice(client, f"/api/users/{each.id}/challenges?limit=100")
        assert [c.id for c in seeded["challenges"] if c.user_id == each.id] == [
            c["id"] for c in listed
        ]
    board = read_twice(client, "/api/leaderboard")
    assert {each.id for each in seeded["users"]} >= {row["user_id"] for row in board}


def test_serve_seeds_its_first_run_with_progress_bars(tmp_path: Path) -> None:
    """`serve` on an empty database shows a finished bar per table before the server listens, and answers on the rows."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRESHCACHE_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "freshcache.cli", "serve", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**env, "FRESHCACHE_DATA_DIR": str(tmp_path), "COLUMNS": "120"},
    )
    try:
        assert process.stderr is not None
        before = []
        for line in process.stderr:  # the bars, then uvicorn's log: listening once this is out
            if "Uvicorn running on" in line:
                break
            before.append(line)
        shown = "".join(before)
        for bar in ("users", "20/20", "challenges", "60/60", "evaluations", "120/120"):
            assert bar in shown
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/api/leaderboard", timeout=10
        ) as board:
            assert json.loads(board.read())
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
