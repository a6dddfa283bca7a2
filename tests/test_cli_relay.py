"""`freshcache relay` against the real PostgreSQL: clear errors at start, and a relay that outlives database failures."""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

import pytest
from sqlalchemy import MetaData, insert, make_url, text

from freshcache import Cache
from freshcache.integrations.sqlalchemy import outbox_table
from freshcache.integrations.sqlalchemy._outbox import outbox_row

from .databases import Database
from .settings import DATABASE_URL

OUTBOX = outbox_table(MetaData())


def relay_command(database_url: str, cache_url: str, *options: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "freshcache.cli",
        "relay",
        "--database-url",
        database_url,
        "--cache-url",
        cache_url,
        *options,
    ]


def run_once(database_url: str, cache_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        relay_command(database_url, cache_url, "--once"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def schema_url(database: Database, application_name: str) -> str:
    """A URL whose connections see only the test's schema, and name themselves."""
    url = make_url(DATABASE_URL).update_query_dict(
        {"options": f"-csearch_path={database.schema}", "application_name": application_name}
    )
    return url.render_as_string(hide_password=False)


BAD_URLS = {
    "a port nobody listens on": make_url(DATABASE_URL).set(port=1),
    "a database that does not exist": make_url(DATABASE_URL).set(database="no_such_database_fc"),
    "not a URL": "not a url",
    "an unknown dialect": "nosuchdb://localhost/app",
}


@pytest.mark.parametrize("bad_url", list(BAD_URLS.values()), ids=list(BAD_URLS))
def test_a_bad_or_unreachable_database_is_one_line_and_a_failure(
    bad_url: object, redis_url: str, namespace: str
) -> None:
    """A database URL that cannot work prints one line naming the problem, no traceback, and exits non-zero."""
    url = bad_url if isinstance(bad_url, str) else bad_url.render_as_string(hide_password=False)  # type: ignore[attr-defined]

    run = run_once(url, f"{redis_url}?namespace={namespace}")

    lines = run.stderr.strip().splitlines()
    assert 1 == len(lines), run.stderr
    assert lines[0].startswith("freshcache: ")
    assert "Traceback" not in run.stderr
    assert run.returncode != 0
    assert "" == run.stdout


def test_a_missing_outbox_table_is_named_with_how_to_create_it(
    postgres: Database, redis_url: str, namespace: str
) -> None:
    """Against a database without the outbox table the relay stops at once and says how to create it."""
    run = run_once(schema_url(postgres, "fc-missing"), f"{redis_url}?namespace={namespace}")

    assert 2 == run.returncode
    assert run.stderr.startswith("freshcache: the outbox table 'freshcache_outbox' does not exist")
    assert "CREATE TABLE freshcache_outbox" in run.stderr
    assert "Traceback" not in run.stderr


class Lines:
    """Every line a stream writes, as it comes, on a queue (read by a thread of its own)."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.queue: queue.Queue[str] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.stream:
            self.queue.put(line)

    def close(self) -> None:
        self.reader.join(10)  # the process has ended: the stream is at its end
        self.stream.close()


def wait_for(lines: Lines, needle: str, seen: list[str], timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        line = lines.queue.get(timeout=max(0.0, deadline - time.monotonic()))
        seen.append(line)
        if needle in line:
            return line


@dataclass
class Relay:
    process: subprocess.Popen[str]
    out: Lines
    err: Lines
    application_name: str


@pytest.fixture
def relay(postgres: Database, redis_url: str, namespace: str) -> Iterator[Relay]:
    """`freshcache relay` running on the test's schema, its output read line by line."""
    application_name = f"fc-relay-{postgres.schema}"
    engine = postgres.engine()
    OUTBOX.create(engine)
    engine.dispose()
    process = subprocess.Popen(
        relay_command(
            schema_url(postgres, application_name),
            f"{redis_url}?namespace={namespace}",
            "--interval",
            "0.05",
            "--grace",
            "0",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    running = Relay(process, Lines(process.stdout), Lines(process.stderr), application_name)  # type: ignore[arg-type]
    try:
        yield running
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        running.out.close()
        running.err.close()


def test_the_relay_outlives_database_errors_and_stops_cleanly_on_sigterm(
    relay: Relay,
    postgres: Database,
    redis_url: str,
    namespace: str,
) -> None:
    """With its table dropped and its connections killed, the relay logs, retries and applies rows again; SIGTERM ends it with 0."""
    out, err = relay.out, relay.err
    seen: list[str] = []
    cache = Cache.from_url(f"{redis_url}?namespace={namespace}")
    engine = postgres.engine()
    admin = postgres.engine(isolation_level="AUTOCOMMIT")

    def leave_row(tag: str) -> None:
        cache.set(tag, "stale", tags=[tag])
        with engine.begin() as connection:
            connection.execute(insert(OUTBOX), outbox_row([tag], ["user"]))

    wait_for(out, "relayed 0 rows", seen)
    OUTBOX.drop(engine)
    wait_for(err, "relay pass failed", seen)
    failure = wait_for(err, "relay pass failed", seen)  # and again, later: it keeps trying
    assert 'relation "freshcache_outbox" does not exist; retrying in' in failure
    OUTBOX.create(engine)
    leave_row("user:1")
    wait_for(out, "relayed 1 rows", seen)
    assert None is cache.get("user:1")
    with admin.connect() as connection:
        killed = connection.execute(
            text(
                "select count(pg_terminate_backend(pid)) from pg_stat_activity"
                " where application_name = :name"
            ),
            {"name": relay.application_name},
        ).scalar_one()
    assert 1 <= killed
    leave_row("user:2")
    wait_for(out, "relayed 1 rows", seen)
    assert None is cache.get("user:2")

    relay.process.send_signal(signal.SIGTERM)
    assert 0 == relay.process.wait(30)
    relay.err.reader.join(10)
    rest = []
    while not err.queue.empty():
        rest.append(err.queue.get_nowait())
    assert [] == [line for line in seen + rest if "Traceback" in line]
    cache.close()
    engine.dispose()
    admin.dispose()
