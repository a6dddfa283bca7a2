"""Session hooks: every write made through a session invalidates the cache, strictly after commit.

``SessionInvalidation`` wires three parts to a session factory's events: the flush's
objects are recorded from their attribute history (``_flushes``), every other statement
that writes a mapped table on the session's connection is caught there (``_capture``),
and the transaction applies what was recorded around its commit (``_transaction``). The
hooks are sync code; under an AsyncSession they run inside SQLAlchemy's greenlet, where
the async manager is awaited.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, Engine, Table, event, text
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from freshcache._async.events.bus import AsyncEventBus
from freshcache._async.manager import AsyncInvalidationManager
from freshcache._events import Event
from freshcache._exceptions import ConfigurationError, InvalidEventError
from freshcache._invalidations import PendingWrite
from freshcache._kinds import require_kind
from freshcache._relays import AppliedRows
from freshcache._sync.events.bus import EventBus
from freshcache._sync.manager import InvalidationManager
from freshcache.integrations.sqlalchemy._async.relay import AsyncOutboxRelay
from freshcache.integrations.sqlalchemy._capture import StatementCapture
from freshcache.integrations.sqlalchemy._flushes import FlushCapture
from freshcache.integrations.sqlalchemy._outbox import require_outbox_once
from freshcache.integrations.sqlalchemy._recording import _Intent
from freshcache.integrations.sqlalchemy._sync.relay import OutboxRelay
from freshcache.integrations.sqlalchemy._transaction import Mode, TransactionHooks

# Set (transaction-local) by the application's sessions; freshcache's triggers skip their writes.
APPLICATION_SETTING = "freshcache.application"


class SessionInvalidation(FlushCapture, StatementCapture, TransactionHooks):
    """Installs the hooks on a session factory; one instance per manager.

    ``mode="strict"`` (the default) marks tags pending before the commit so that no read
    goes backwards; ``"commit"`` only invalidates after it. ``outbox`` is the table from
    :func:`outbox_table`, or None to go without one (then a crash between commit and
    invalidation is not repaired). ``relay`` deletes applied outbox rows in batches.

    ``bus`` (an event bus of the manager's kind) publishes the domain events that a
    transaction adds with :meth:`publish_in` (the repositories add theirs): written to
    the outbox row with the tags, published after the commit, or by the relay if the
    process dies first; none for a transaction or savepoint rolled back. The writes the
    hooks catch without a repository (raw SQL, bulk statements, database cascades)
    publish nothing by themselves: they are row changes, not domain facts, and are
    invalidated all the same.

    SQL that changes mapped tables out of sight (a procedure, a trigger, a view) names
    the classes it changes with the execution option ``freshcache_writes=[Model, ...]``:
    their entries are all invalidated.
    """

    def __init__(
        self,
        manager: AsyncInvalidationManager | InvalidationManager,
        *,
        mode: Mode = "strict",
        outbox: Table | None = None,
        relay: AppliedRows | None = None,
        bus: AsyncEventBus | EventBus | None = None,
        bulk_row_limit: int = 1000,
        database_triggers: bool = False,
    ) -> None:
        require_kind(
            manager, (AsyncInvalidationManager, InvalidationManager), "SessionInvalidation"
        )
        if relay is not None:
            async_manager = isinstance(manager, AsyncInvalidationManager)
            require_kind(
                relay,
                AsyncOutboxRelay if async_manager else OutboxRelay,
                f"SessionInvalidation with {'an Async' if async_manager else 'an '}InvalidationManager",
            )
        if bus is not None:
            async_manager = isinstance(manager, AsyncInvalidationManager)
            require_kind(
                bus,
                AsyncEventBus if async_manager else EventBus,
                f"SessionInvalidation with {'an Async' if async_manager else 'an '}InvalidationManager",
            )
            if relay is not None and getattr(relay, "bus", None) is None:
                raise ConfigurationError(
                    "the hooks publish events but their relay has no bus: give the relay "
                    "bus=... too, or events of a process that died after its commit are never published"
                )
        if mode not in ("strict", "commit"):
            raise ConfigurationError(f"mode must be 'strict' or 'commit', not {mode!r}")
        self.manager = manager
        self.mode = mode
        self.outbox = outbox
        self.relay = relay
        self.bus = bus
        self.bulk_row_limit = bulk_row_limit
        # With freshcache's PostgreSQL triggers installed, the application's transactions
        # say so, and the triggers leave their rows alone: these hooks cover them already.
        self.database_triggers = database_triggers
        self.is_async = isinstance(manager, AsyncInvalidationManager)
        # Called after the database commit and before the invalidation: a test stops a
        # process exactly there to show that the outbox repairs what it left undone.
        self.on_committed: Callable[[Session], None] | None = None
        self._types: dict[type[Any], str | None] = {}
        # The connections hooked sessions hold, so that a statement seen at the engine is
        # known to be one of theirs; and the engines listened on, once each.
        self._sessions: weakref.WeakKeyDictionary[Connection, Session] = weakref.WeakKeyDictionary()
        self._engines: weakref.WeakSet[Engine] = weakref.WeakSet()
        self._engines_lock = threading.Lock()

    # Installing

    def install(self, factory: sessionmaker[Any] | async_sessionmaker[Any]) -> None:
        """Listen on the sessions ``factory`` makes (a sessionmaker or an async_sessionmaker)."""
        if isinstance(factory, async_sessionmaker):
            if not self.is_async:
                raise ConfigurationError("an async_sessionmaker needs an AsyncInvalidationManager")
            base = factory.kw.get("sync_session_class") or Session
            target: Any = type(f"Freshcache{base.__name__}", (base,), {})
            factory.kw["sync_session_class"] = target
        elif isinstance(factory, sessionmaker):
            if self.is_async:
                raise ConfigurationError("a sessionmaker needs a sync InvalidationManager")
            target = factory
            if self.outbox is not None:  # an async factory's first commit checks instead
                require_outbox_once(factory.kw.get("bind"), self.outbox)
        else:
            raise ConfigurationError(
                f"install takes a sessionmaker or an async_sessionmaker, not {factory!r}"
            )
        event.listen(target, "before_flush", self._before_flush)
        event.listen(target, "after_flush", self._after_flush)
        event.listen(target, "after_flush_postexec", self._after_flush_postexec)
        event.listen(target, "before_commit", self._before_commit)
        event.listen(target, "after_commit", self._after_commit)
        event.listen(target, "after_soft_rollback", self._after_soft_rollback)
        event.listen(target, "after_transaction_end", self._after_transaction_end)
        event.listen(target, "after_begin", self._after_begin)

    def publish_in(self, session: Any, *events: Event) -> None:
        """Publish ``events`` when ``session``'s transaction commits (a Session or an AsyncSession).

        They are written to the outbox with the transaction and published after the
        commit, at least once; a rollback of the transaction, or of the savepoint they
        were added in, drops them.
        """
        if self.bus is None:
            raise ConfigurationError("publish_in needs hooks made with bus=...")
        for each in events:
            if not isinstance(each, Event):
                raise InvalidEventError(
                    f"publish_in takes Event objects, not {type(each).__name__}"
                )
        session = getattr(session, "sync_session", session)
        if not isinstance(session, Session) or not session.in_transaction():
            raise ConfigurationError(
                f"publish_in needs a session in a transaction, not {session!r}: "
                "events outside one would have no commit to wait for"
            )
        savepoint = session.get_nested_transaction()
        intents = self._state(session).intents
        source = self.bus.source
        for each in events:
            stamped = replace(each, source=source) if source and not each.source else each
            intents.append(_Intent(savepoint, event=stamped))

    def _after_begin(
        self, session: Session, transaction: SessionTransaction, connection: Connection
    ) -> None:
        self._sessions[connection] = session
        self._listen(connection.engine)
        if self.database_triggers and connection.dialect.name == "postgresql":
            connection.execute(text(f"SET LOCAL {APPLICATION_SETTING} = 'on'"))


__all__ = ["PendingWrite", "SessionInvalidation"]
