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
from typing import Any

from sqlalchemy import Connection, Engine, Table, event, text
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from freshcache._async.manager import AsyncInvalidationManager
from freshcache._exceptions import ConfigurationError
from freshcache._invalidations import PendingWrite
from freshcache._kinds import require_kind
from freshcache._relays import AppliedRows
from freshcache._sync.manager import InvalidationManager
from freshcache.integrations.sqlalchemy._async.relay import AsyncOutboxRelay
from freshcache.integrations.sqlalchemy._capture import StatementCapture
from freshcache.integrations.sqlalchemy._flushes import FlushCapture
from freshcache.integrations.sqlalchemy._outbox import require_outbox_once
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
        if mode not in ("strict", "commit"):
            raise ConfigurationError(f"mode must be 'strict' or 'commit', not {mode!r}")
        self.manager = manager
        self.mode = mode
        self.outbox = outbox
        self.relay = relay
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

    def _after_begin(
        self, session: Session, transaction: SessionTransaction, connection: Connection
    ) -> None:
        self._sessions[connection] = session
        self._listen(connection.engine)
        if self.database_triggers and connection.dialect.name == "postgresql":
            connection.execute(text(f"SET LOCAL {APPLICATION_SETTING} = 'on'"))


__all__ = ["PendingWrite", "SessionInvalidation"]
