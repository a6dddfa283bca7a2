"""Session hooks: every write made through a session invalidates the cache, strictly after commit.

At each flush the inserted, updated and deleted objects are recorded with their changed
fields and old values, tagged with the savepoint they happened in (a rolled-back
savepoint drops its own). Every other statement that writes a mapped table on the
session's connection (ORM and Core ``insert()``/``update()``/``delete()``, the legacy bulk
methods, ``text()`` and driver SQL) is caught at the connection, where they all pass: the
rows it names are read before it (locked) and reported by RETURNING where the database
has it, and whatever cannot be known row by row invalidates the type's wide tags.

Before the commit the transaction's tags are written to the outbox in the same database
transaction and, in strict mode, marked pending. After the commit they get new versions
and the outbox row is handed to the relay for deletion. The hooks are sync code; under an
AsyncSession they run inside SQLAlchemy's greenlet, where the async manager is awaited.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Literal

from sqlalchemy import (
    Connection,
    Engine,
    Table,
    event,
    insert,
    inspect,
    select,
    text,
    tuple_,
)
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker
from sqlalchemy.util import await_only

from freshcache._async.manager import AsyncInvalidationManager
from freshcache._exceptions import ConfigurationError
from freshcache._invalidations import PendingWrite
from freshcache._kinds import require_kind
from freshcache._relays import AppliedRows
from freshcache._sync.manager import InvalidationManager
from freshcache.integrations.sqlalchemy._async.relay import AsyncOutboxRelay
from freshcache.integrations.sqlalchemy._capture import StatementCapture, lock_for_writing
from freshcache.integrations.sqlalchemy._models import (
    change_of,
    column_keys,
    load_columns,
    mapper_of,
    values_of,
)
from freshcache.integrations.sqlalchemy._outbox import outbox_row, require_outbox_once
from freshcache.integrations.sqlalchemy._recording import _INFO_KEY, _Intent, _Transaction
from freshcache.integrations.sqlalchemy._sync.relay import OutboxRelay

log = logging.getLogger("freshcache")

# Set (transaction-local) by the application's sessions; freshcache's triggers skip their writes.
APPLICATION_SETTING = "freshcache.application"
Mode = Literal["strict", "commit"]


class SessionInvalidation(StatementCapture):
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

    def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        result = method(*args, **kwargs)
        return await_only(result) if self.is_async else result

    def _after_begin(
        self, session: Session, transaction: SessionTransaction, connection: Connection
    ) -> None:
        self._sessions[connection] = session
        self._listen(connection.engine)
        if self.database_triggers and connection.dialect.name == "postgresql":
            connection.execute(text(f"SET LOCAL {APPLICATION_SETTING} = 'on'"))

    # Recording at the flush

    def _before_flush(self, session: Session, flush_context: Any, instances: Any) -> None:
        transaction = self._state(session)
        transaction.flush = weakref.ref(flush_context)
        transaction.unloaded_old.clear()
        for instance in session.dirty:
            if self._entity_type(type(instance)) is not None:
                load_columns(instance)
        self._read_unloaded_old_values(session, transaction)
        deleted: dict[type[Any], list[dict[str, Any]]] = {}
        for instance in session.deleted:
            load_columns(instance)  # its own tags, and the keys its cascades follow
            values = values_of(instance)
            old = transaction.unloaded_old.get(id(instance))
            deleted.setdefault(type(instance), []).append({**values, **(old[1] if old else {})})
        for model, rows in deleted.items():
            self._record_database_cascades(session, session.execute, model, rows)

    def _read_unloaded_old_values(self, session: Session, transaction: _Transaction) -> None:
        """Read the old values of columns set while the session did not hold them.

        A column set while expired (by a commit, with expire_on_commit) or deferred has no
        old value in its history, yet the rules need it (the old parent's list). Before the
        flush the row still holds it: one locked read per class, by primary key.
        """
        missing: dict[type[Any], list[tuple[Any, list[str]]]] = {}
        for instance in (*session.dirty, *session.deleted):
            if self._entity_type(type(instance)) is None:
                continue
            state = inspect(instance)
            if state.key is None:
                continue
            columns = column_keys(type(instance))
            keys = [
                key
                for key in state.committed_state  # the attributes changed since the load
                if key in columns
                and (history := state.attrs[key].history).added
                and not history.deleted
            ]
            if keys:
                missing.setdefault(type(instance), []).append((instance, keys))
        for model, instances in missing.items():
            mapper = mapper_of(model)
            primary = [mapper.get_property_by_column(c).key for c in mapper.primary_key]
            wanted = sorted({key for _, keys in instances for key in keys})
            identities = [inspect(instance).key[1] for instance, _ in instances]
            connection = session.connection(bind_arguments={"mapper": mapper})
            lock_for_writing(connection, mapper.primary_key[0])  # type: ignore[arg-type]
            query = (
                select(*[getattr(model, key) for key in (*primary, *wanted)])
                .where(tuple_(*[getattr(model, key) for key in primary]).in_(identities))
                .with_for_update()
            )
            found = {
                tuple(row[: len(primary)]): dict(zip(wanted, row[len(primary) :], strict=True))
                for row in session.execute(query)
            }
            for instance, keys in instances:
                row = found.get(tuple(inspect(instance).key[1]))
                if row is not None:
                    old = {key: row[key] for key in keys}
                    transaction.unloaded_old[id(instance)] = (instance, old)

    def _after_flush(self, session: Session, flush_context: Any) -> None:
        savepoint = session.get_nested_transaction()
        transaction = self._state(session)
        intents = []
        for kind, instances in (
            ("insert", session.new),
            ("update", session.dirty),
            ("delete", session.deleted),
        ):
            for instance in instances:
                if self._entity_type(type(instance)) is None:
                    continue
                change = change_of(instance, kind)
                unloaded = transaction.unloaded_old.get(id(instance))
                if change is not None and unloaded is not None:
                    change = replace(change, old={**(change.old or {}), **unloaded[1]})
                if change is not None:
                    intents.append(_Intent(savepoint, change))
        transaction.unloaded_old.clear()
        transaction.intents.extend(intents)

    @staticmethod
    def _after_flush_postexec(session: Session, flush_context: Any) -> None:
        state = session.info.get(_INFO_KEY)
        if state is not None:
            state.flush = None

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
        rules = self.manager.rules
        tags: dict[str, None] = {}
        for intent in state.intents:
            if intent.change is not None:
                formatted = rules.tags_for_changes([intent.change], unfillable=self._unfillable)
                tags.update(dict.fromkeys(formatted))
                state.changes.append(intent.change)
            tags.update(dict.fromkeys(intent.tags))
        state.tags = tuple(tags)
        if not state.tags:
            return
        if self.outbox is not None:
            require_outbox_once(session.connection(), self.outbox)
        marking = None
        if self.mode == "strict":
            if isinstance(self.manager, AsyncInvalidationManager) and self.outbox is not None:
                # Mark pending while the outbox row travels to the database: the two round
                # trips overlap, and strict mode costs (almost) nothing over commit mode.
                marking = asyncio.ensure_future(self.manager.begin(state.tags))
            else:
                state.pending = self._call(self.manager.begin, state.tags)
        try:
            if self.outbox is not None:
                row = outbox_row(state.tags, (change.entity_type for change in state.changes))
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
        if state is None or not state.tags:
            return
        if self.on_committed is not None:
            self.on_committed(session)
        try:
            invalidation = self._call(
                self.manager.apply_transaction,
                state.tags,
                changes=state.changes,
                pending=state.pending,
                source="transaction",
            )
        except Exception:
            # Never fail a write that has committed: the outbox row stays for the relay.
            log.exception("invalidation after commit failed; the outbox relay will apply it")
            return
        if invalidation.applied and state.outbox_id is not None and self.relay is not None:
            self.relay.applied(state.outbox_id)


def _within(savepoint: SessionTransaction | None, ancestor: SessionTransaction) -> bool:
    transaction = savepoint
    while transaction is not None:
        if transaction is ancestor:
            return True
        transaction = transaction.parent
    return False


__all__ = ["PendingWrite", "SessionInvalidation"]
