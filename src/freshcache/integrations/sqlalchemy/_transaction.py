"""A hooked session's transaction: savepoints, the two-phase commit, and the rollback.

Before the commit the transaction's tags and domain events are written to the outbox, in
one row, in the same database transaction and, in strict mode, the tags are marked
pending. After the commit they get new versions, the events are published, and the
outbox row is handed to the relay for deletion. A rolled-back savepoint drops
the changes recorded in it; a transaction that ends without committing releases its
marks, or invalidates its tags when the commit's outcome is unknown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Literal

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.util import await_only

from freshcache._async.events.bus import AsyncEventBus
from freshcache._async.manager import AsyncInvalidationManager
from freshcache._relays import AppliedRows
from freshcache._sync.events.bus import EventBus
from freshcache.integrations.sqlalchemy._outbox import outbox_row, require_outbox_once
from freshcache.integrations.sqlalchemy._recording import _INFO_KEY, Recorder

log = logging.getLogger("freshcache")

Mode = Literal["strict", "commit"]


class TransactionHooks(Recorder):
    """Applies a hooked session's recorded changes around its commit, or lets go of them."""

    mode: Mode
    outbox: Table | None
    relay: AppliedRows | None
    bus: AsyncEventBus | EventBus | None
    is_async: bool
    on_committed: Callable[[Session], None] | None

    def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        result = method(*args, **kwargs)
        return await_only(result) if self.is_async else result

    def _after_soft_rollback(
        self, session: Session, previous_transaction: SessionTransaction
    ) -> None:
        state = session.info.get(_INFO_KEY)
        if state is None:
            return
        state.flush = None  # a flush that failed ends here
        if previous_transaction.nested:
            state.intents = [
                i for i in state.intents if not _within(i.savepoint, previous_transaction)
            ]
            return
        if previous_transaction.parent is not None:
            return  # an inner subtransaction: the root's own rollback follows
        self._end_without_commit(session)

    def _after_transaction_end(self, session: Session, transaction: SessionTransaction) -> None:
        # A session closed without a rollback ends its transaction here and nowhere else.
        if transaction.parent is None and _INFO_KEY in session.info:
            self._end_without_commit(session)

    def _end_without_commit(self, session: Session) -> None:
        """The root transaction ended without after_commit: release its marks, or invalidate.

        Once before_commit has finished, a failure may have come from the COMMIT itself
        (a connection lost after the server committed): the outcome is unknown, so the
        tags are invalidated as if it had committed. Colder, never stale.
        """
        state = session.info.pop(_INFO_KEY, None)
        if state is None or (state.pending is None and not state.committing):
            return
        if state.committing and not state.tags:
            return  # events alone: the outbox row, if it committed, is the relay's to publish
        try:
            if state.committing:
                self._call(
                    self.manager.apply_transaction,
                    state.tags,
                    pending=state.pending,
                    source="transaction, outcome unknown",
                )
            else:
                self._call(self.manager.abort, state.pending)
        except Exception:
            log.exception("could not release pending marks after a failed transaction; they expire")

    # Committing

    def _before_commit(self, session: Session) -> None:
        if session.get_nested_transaction() is not None:
            return  # a savepoint is released: its intents stay with the transaction
        session.flush()  # the commit's own flush comes after this event: have it now
        state = session.info.get(_INFO_KEY)
        if state is None or not state.intents:
            return
        state.events = [intent.event for intent in state.intents if intent.event is not None]
        rules = self.manager.rules
        tags: dict[str, None] = {}
        for intent in state.intents:
            if intent.change is not None:
                formatted = rules.tags_for_changes([intent.change], unfillable=self._unfillable)
                tags.update(dict.fromkeys(formatted))
                state.changes.append(intent.change)
            tags.update(dict.fromkeys(intent.tags))
        state.tags = tuple(tags)
        if not state.tags and not state.events:
            return
        if self.outbox is not None:
            require_outbox_once(session.connection(), self.outbox)
        marking = None
        if self.mode == "strict" and state.tags:
            if isinstance(self.manager, AsyncInvalidationManager) and self.outbox is not None:
                # Mark pending while the outbox row travels to the database: the two round
                # trips overlap, and strict mode costs (almost) nothing over commit mode.
                marking = asyncio.ensure_future(self.manager.begin(state.tags))
            else:
                state.pending = self._call(self.manager.begin, state.tags)
        try:
            if self.outbox is not None:
                row = outbox_row(
                    state.tags,
                    (change.entity_type for change in state.changes),
                    events=state.events,
                )
                # Core, through the session's connection: no ORM execution pipeline for it.
                session.connection().execute(insert(self.outbox), row)
                state.outbox_id = row["id"]
        finally:
            if marking is not None:
                state.pending = await_only(marking)
        state.committing = True

    def _after_commit(self, session: Session) -> None:
        if session.get_nested_transaction() is not None:
            return
        state = session.info.pop(_INFO_KEY, None)
        if state is None or not (state.tags or state.events):
            return
        if self.on_committed is not None:
            self.on_committed(session)
        # Never fail a write that has committed: what fails here, the outbox row keeps for
        # the relay, which applies the tags and publishes the events again (both harmless).
        applied = True
        if state.tags:
            try:
                invalidation = self._call(
                    self.manager.apply_transaction,
                    state.tags,
                    changes=state.changes,
                    pending=state.pending,
                    source="transaction",
                )
                applied = invalidation.applied
            except Exception:
                log.exception("invalidation after commit failed; the outbox relay will apply it")
                applied = False
        if state.events and self.bus is not None:
            try:
                self._call(self.bus.publish_many, state.events)
            except Exception:
                applied = False
                log.exception(
                    "publishing %d events after commit failed; %s",
                    len(state.events),
                    "the outbox relay will publish them"
                    if state.outbox_id is not None
                    else "they are lost (no outbox)",
                )
        if applied and state.outbox_id is not None and self.relay is not None:
            self.relay.applied(state.outbox_id)


def _within(savepoint: SessionTransaction | None, ancestor: SessionTransaction) -> bool:
    transaction = savepoint
    while transaction is not None:
        if transaction is ancestor:
            return True
        transaction = transaction.parent
    return False
