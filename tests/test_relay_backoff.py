"""The outbox relay running in the background backs off while the database fails, and says so in one line."""

from __future__ import annotations

import logging
import queue
import time

from sqlalchemy import Engine, MetaData, insert

from freshcache import Cache, Invalidation, InvalidationManager
from freshcache.integrations.sqlalchemy import OutboxRelay, outbox_table
from freshcache.integrations.sqlalchemy._outbox import outbox_row

from .databases import Database

OUTBOX = outbox_table(MetaData())


class Records(logging.Handler):
    """The relay's failure records, on a queue the test waits on."""

    def __init__(self) -> None:
        super().__init__()
        self.failures: queue.Queue[logging.LogRecord] = queue.Queue()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("outbox relay pass failed"):
            self.failures.put(record)


def leave_row(engine: Engine, tag: str) -> None:
    row = outbox_row([tag], ["user"])
    row["created_at"] = time.time() - 60
    with engine.begin() as connection:
        connection.execute(insert(OUTBOX), row)


def test_failed_passes_double_the_delay_and_a_good_pass_resets_it(postgres: Database) -> None:
    """With its table missing the relay retries after 0.02, 0.04, 0.08, 0.16 s, one line each and no traceback; once a pass succeeds the delay is the interval again."""
    engine = postgres.engine()
    manager = InvalidationManager(Cache.from_url("memory://"))
    applied: queue.Queue[Invalidation] = queue.Queue()
    manager.subscribe(applied.put)
    relay = OutboxRelay(engine, manager, OUTBOX, grace=0, interval=0.01)
    records = Records()
    logger = logging.getLogger("freshcache")
    logger.addHandler(records)
    try:
        relay.start()
        failures = [records.failures.get(timeout=30) for _ in range(4)]

        assert [
            'relation "freshcache_outbox" does not exist; retrying in 0.02 s',
            'relation "freshcache_outbox" does not exist; retrying in 0.04 s',
            'relation "freshcache_outbox" does not exist; retrying in 0.08 s',
            'relation "freshcache_outbox" does not exist; retrying in 0.16 s',
        ] == [record.getMessage().split(": ", 1)[1] for record in failures]
        assert not any(record.exc_info for record in failures)
        OUTBOX.create(engine)
        # The second row is applied by a pass after the one that applied the first: by
        # then a whole pass has succeeded, whatever the drop below does to the current one.
        for tag in ("user:1", "user:2"):
            leave_row(engine, tag)
            assert (tag,) == applied.get(timeout=30).tags
        while not records.failures.empty():  # failures from before the table existed
            records.failures.get_nowait()
        OUTBOX.drop(engine)
        assert records.failures.get(timeout=30).getMessage().endswith("retrying in 0.02 s")
    finally:
        relay.close()
        logger.removeHandler(records)
        manager.close()
        engine.dispose()
