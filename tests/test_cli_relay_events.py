"""`freshcache relay --events-url`: the command publishes the events of the rows it relays."""

from __future__ import annotations

import json
import subprocess
import time

import redis
from sqlalchemy import MetaData, insert

from freshcache import Event, EventTypes
from freshcache.integrations.sqlalchemy import outbox_table
from freshcache.integrations.sqlalchemy._outbox import outbox_row

from .databases import Database
from .integrations.support import count_rows
from .test_cli_relay import relay_command, schema_url

OUTBOX = outbox_table(MetaData())


def test_the_relay_command_publishes_left_behind_events_only_when_given_a_stream(
    postgres: Database, redis_url: str, namespace: str
) -> None:
    """Without --events-url a row carrying events is left pending; with it the event reaches the stream, id and all."""
    engine = postgres.engine()
    OUTBOX.metadata.create_all(engine)
    event = Event(EventTypes.USER_UPDATED, {"old": {"id": 1}})
    row = outbox_row(["user:1"], ["user"], events=[event])
    row["created_at"] = time.time() - 60
    with engine.begin() as connection:
        connection.execute(insert(OUTBOX), [row])
    database_url = schema_url(postgres, "relay-events")
    cache_url = f"{redis_url}?namespace={namespace}"

    def run(*options: str) -> str:
        done = subprocess.run(
            relay_command(database_url, cache_url, "--once", *options),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert 0 == done.returncode, done.stderr
        return done.stdout

    assert "relayed 0 rows; 1 pending" in run()
    assert "relayed 1 rows; 0 pending" in run(
        "--events-url", redis_url, "--events-namespace", namespace
    )

    assert 0 == count_rows(engine, OUTBOX)
    with redis.Redis.from_url(redis_url) as client:
        [(_, fields)] = client.xrange(f"{{{namespace}}}:events")
    published = json.loads(fields[b"event"])
    assert (event.id, event.type, {"old": {"id": 1}}) == (
        published["id"],
        published["type"],
        published["data"],
    )
    engine.dispose()
