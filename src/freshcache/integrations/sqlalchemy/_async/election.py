"""Which of several outbox relays on one database scans for rows left behind: the elected one.

On PostgreSQL the leader holds a session advisory lock (``pg_try_advisory_lock``) on a
connection of its own, kept out of any transaction; the others try to take it at every
pass, so when the leader's process dies its connection closes, the lock goes with it and
a standby takes over at its next pass. The lock is named after the outbox table and its
schema, so relays of other schemas (or other outboxes) in the same database do not
contend. A leader checks its connection at every pass and stands down if it is gone.

Election only saves work: relays claim rows with ``FOR UPDATE SKIP LOCKED``, so two
leaders for a moment (a lost connection noticed one pass late) apply nothing twice. On
SQLite and other databases there is no such lock and no election: every relay leads
(with SQLite there is normally one process anyway).
"""

from __future__ import annotations

import logging

from sqlalchemy import Table, text

from freshcache.integrations.sqlalchemy._errors import reason_of
from freshcache.integrations.sqlalchemy._orm import AsyncConnection, AsyncEngine

log = logging.getLogger("freshcache")

# hashtextextended (PostgreSQL 11+) turns the name into the lock's 64-bit key, on the server,
# where current_schema() is the one the relay's statements resolve the table in.
_TRY_LOCK = text(
    "select pg_try_advisory_lock(hashtextextended("
    "'freshcache outbox relay ' || coalesce(:schema, current_schema()) || '.' || :table, 0))"
)


class AsyncRelayElection:
    """The leader among the relays of one outbox: the holder of its advisory lock."""

    def __init__(self, engine: AsyncEngine, table: Table) -> None:
        self.engine = engine
        self.table = table
        self.supported = engine.dialect.name == "postgresql"
        self.won = 0  # how many times this relay became the leader
        self._connection: AsyncConnection | None = None

    @property
    def leading(self) -> bool:
        """Whether this relay led at its last campaign (always, where there is no election)."""
        return not self.supported or self._connection is not None

    async def campaign(self) -> bool:
        """Keep the lead, or take it if it is free; whether this relay leads now.

        Raises what the database raises when it cannot be asked (the pass fails, as it
        would at its first statement).
        """
        if not self.supported:
            return True
        if self._connection is not None:
            try:
                await self._connection.execute(text("select 1"))
                return True
            except Exception as exc:
                log.warning("outbox relay: lost the lead (%s); standing by", reason_of(exc))
                await self.resign()  # and try to take it again at once, on a new connection
        connection = await self.engine.connect()
        try:
            connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
            won = (
                await connection.execute(
                    _TRY_LOCK, {"schema": self.table.schema, "table": self.table.name}
                )
            ).scalar()
        except BaseException:
            await connection.close()
            raise
        if not won:
            await connection.close()
            return False
        self._connection = connection
        self.won += 1
        log.info("outbox relay: elected to relay %s", self.table.name)
        return True

    async def resign(self) -> None:
        """Let the lead go: the connection is discarded, not pooled, so its lock goes with it."""
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                await connection.invalidate()
                await connection.close()
            except Exception as exc:  # a connection already broken: the lock is gone with it
                log.debug("outbox relay: closing the election connection: %s", reason_of(exc))
