"""The outbox relay: deletes applied rows in batches, and applies rows left behind.

A row still in the outbox after ``grace`` seconds belongs to a transaction whose
invalidation did not happen (its process died between commit and invalidation) or did
not succeed (the cache was down). The relay claims such rows (``FOR UPDATE SKIP LOCKED``
on PostgreSQL, so several relays share the work), invalidates their tags in one
operation, and deletes them in the same transaction; if the invalidation fails the rows
stay. A row's domain events are published by the relay's ``bus`` in the same claim,
before the rows are deleted: if publishing fails the rows stay too. Applying a row twice
is harmless: a tag invalidated twice is invalidated, and an event published twice keeps
its id, so consumers (the invalidation handlers, for one) recognise the redelivery.
A relay without a bus leaves rows that carry events to one that has a bus.

With ``elect=True`` the relays of one outbox on PostgreSQL elect one of them to scan for
stale rows (:mod:`.election`); the others still delete the rows they applied themselves,
and scan only for rows older than ``standby_grace`` (twice per that time), in case the
leader is alive but not relaying (stalled, or cut off from the cache).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any

from sqlalchemy import Table, delete, func, or_, select
from sqlalchemy.exc import SQLAlchemyError

from freshcache._async.events.bus import AsyncEventBus
from freshcache._async.manager import AsyncInvalidationManager
from freshcache._durations import Seconds, seconds
from freshcache._exceptions import ConfigurationError, FreshcacheError
from freshcache._kinds import require_kind
from freshcache._synchronization import AsyncBackgroundTask, AsyncEvent
from freshcache.integrations.sqlalchemy._async.election import AsyncRelayElection
from freshcache.integrations.sqlalchemy._errors import reason_of
from freshcache.integrations.sqlalchemy._orm import AsyncEngine
from freshcache.integrations.sqlalchemy._outbox import events_of_rows, retry_delay, tags_of_rows

log = logging.getLogger("freshcache")


class _Unapplied(Exception):
    """The cache refused the invalidation: roll the claim back, keep the rows."""


class AsyncOutboxRelay:
    """Deletes applied outbox rows and applies stale ones, in the background or on demand."""

    def __init__(
        self,
        engine: AsyncEngine,
        manager: AsyncInvalidationManager,
        table: Table,
        *,
        grace: Seconds = 5.0,
        interval: Seconds = 0.5,
        batch_size: int = 1000,
        bus: AsyncEventBus | None = None,
        elect: bool = False,
        standby_grace: Seconds = 60.0,
    ) -> None:
        require_kind(engine, AsyncEngine, "AsyncOutboxRelay")
        require_kind(manager, AsyncInvalidationManager, "AsyncOutboxRelay")
        if bus is not None:
            require_kind(bus, AsyncEventBus, "AsyncOutboxRelay")
        grace = seconds("grace", grace, zero_allowed=True)
        interval = seconds("interval", interval)
        standby_grace = seconds("standby_grace", standby_grace, zero_allowed=True)
        if batch_size < 1:
            raise ConfigurationError(f"relay needs batch_size >= 1, not {batch_size}")
        self.engine = engine
        self.manager = manager
        self.table = table
        self.grace = grace
        self.interval = interval
        self.batch_size = batch_size
        self.bus = bus
        self.election = AsyncRelayElection(engine, table) if elect else None
        self.standby_grace = standby_grace
        self._next_standby_scan = 0.0
        self.relayed_rows = 0
        self.relayed_events = 0
        self.unreadable_events = 0
        self.deleted_rows = 0
        self.failed_runs = 0
        self.invalid_tags = 0
        self.unreadable_rows = 0
        self.last_stats: dict[str, Any] = {}
        self._applied: deque[str] = deque()
        self._skip_locked = engine.dialect.name == "postgresql"
        self._closing = AsyncEvent()
        self._worker = AsyncBackgroundTask(self._run, "freshcache-outbox-relay")
        self._started = False

    def applied(self, row_id: str) -> None:
        """A row whose invalidation is done: delete it with the next batch (starts the relay)."""
        self._applied.append(row_id)
        if not self._started:
            self.start()

    def start(self) -> None:
        """Run in the background until ``aclose``."""
        if not self._started:
            self._started = True
            self._worker.start()

    async def aclose(self, timeout: float = 5.0) -> None:
        self._closing.set()
        await self._worker.join(timeout)
        try:
            await self.delete_applied()
        finally:
            if self.election is not None:
                await self.election.resign()

    @property
    def leading(self) -> bool:
        """Whether this relay scans for stale rows: elected at its last pass, or not electing."""
        return self.election is None or self.election.leading

    async def _run(self) -> None:
        delay = self.interval
        while not await self._closing.wait(delay):
            try:
                await self.run_once()
            except Exception as exc:
                self.failed_runs += 1
                # A database down for minutes must not cost a traceback every interval.
                delay = retry_delay(delay)
                log.warning(
                    "outbox relay pass failed: %s; retrying in %.2f s",
                    reason_of(exc),
                    delay,
                    exc_info=not isinstance(exc, (SQLAlchemyError, FreshcacheError)),
                )
            else:
                delay = self.interval

    async def run_once(self) -> int:
        """Delete the applied rows, then apply stale ones until none is left; how many were applied.

        A relay that stands by applies only rows older than ``standby_grace``. Refreshes
        ``last_stats``, what metrics exporters read.
        """
        await self.delete_applied()
        older_than = None
        if self.election is not None and not await self.election.campaign():
            # Standing by: a scan for what a silent leader left, twice per standby grace.
            if time.monotonic() < self._next_standby_scan:
                self.last_stats = await self.stats()
                return 0
            self._next_standby_scan = time.monotonic() + self.standby_grace / 2
            older_than = self.standby_grace
        relayed = 0
        while True:
            count = await self.relay_stale(older_than)
            relayed += count
            if count < self.batch_size:
                break
        self.last_stats = await self.stats()
        return relayed

    async def delete_applied(self) -> int:
        ids: list[str] = []
        while self._applied and len(ids) < 10 * self.batch_size:
            ids.append(self._applied.popleft())
        if not ids:
            return 0
        try:
            async with self.engine.begin() as connection:
                await connection.execute(delete(self.table).where(self.table.c.id.in_(ids)))
        except Exception:
            self._applied.extendleft(reversed(ids))
            raise
        self.deleted_rows += len(ids)
        return len(ids)

    async def relay_stale(self, older_than: float | None = None) -> int:
        """Claim one batch of rows older than the grace period (or ``older_than`` seconds),
        invalidate, delete; how many."""
        table = self.table
        if older_than is None:
            # A trigger's row has no writer applying it: it need not wait out the grace.
            stale = or_(table.c.created_at < time.time() - self.grace, table.c.source == "trigger")
        else:
            stale = table.c.created_at < time.time() - older_than
        query = (
            select(table.c.id, table.c.tags, table.c.events)
            .where(stale)
            .order_by(table.c.created_at)
            .limit(self.batch_size)
        )
        if self.bus is None:
            query = query.where(table.c.events.is_(None))
        if self._skip_locked:
            query = query.with_for_update(skip_locked=True)
        try:
            async with self.engine.begin() as connection:
                rows = (await connection.execute(query)).all()
                if not rows:
                    return 0
                tags, invalid, unreadable = tags_of_rows(rows)
                if invalid or unreadable:
                    self._report_bad_rows(invalid, unreadable)
                invalidation = await self.manager.invalidate_tags(tags, source="outbox relay")
                if unreadable and invalidation.applied:
                    # What an unreadable row meant to invalidate is unknown: drop every
                    # entry, colder but never stale, rather than block the rows behind it.
                    invalidation = await self.manager.invalidate_pattern(
                        "*", confirm_all=True, source="outbox relay"
                    )
                if not invalidation.applied:
                    raise _Unapplied
                events, unreadable_events = events_of_rows(rows)
                if events:
                    assert self.bus is not None  # the query leaves rows with events otherwise
                    await self.bus.publish_many(events)
                await connection.execute(
                    delete(table).where(table.c.id.in_([row.id for row in rows]))
                )
        except _Unapplied:
            return 0
        self.relayed_rows += len(rows)
        self.relayed_events += len(events)
        self.unreadable_events += unreadable_events
        return len(rows)

    def _report_bad_rows(self, invalid: int, unreadable: int) -> None:
        self.invalid_tags += invalid
        self.unreadable_rows += unreadable
        log.error(
            "outbox relay: %d invalid tags dropped (they name nothing cached), %d unreadable rows "
            "(every entry will be dropped); check what writes %s",
            invalid,
            unreadable,
            self.table.name,
        )

    async def stats(self) -> dict[str, Any]:
        """``outbox_pending`` (rows waiting) and ``relay_lag_seconds`` (age of the oldest)."""
        async with self.engine.connect() as connection:
            count, oldest = (
                await connection.execute(
                    select(func.count(), func.min(self.table.c.created_at)).select_from(self.table)
                )
            ).one()
        return {
            "outbox_pending": count,
            "relay_lag_seconds": 0.0 if oldest is None else max(0.0, time.time() - oldest),
            "relayed_rows": self.relayed_rows,
            "relayed_events": self.relayed_events,
            "unreadable_events": self.unreadable_events,
            "deleted_rows": self.deleted_rows,
            "failed_runs": self.failed_runs,
            "invalid_tags": self.invalid_tags,
            "unreadable_rows": self.unreadable_rows,
            "relay_leader": 1 if self.leading else 0,
        }
