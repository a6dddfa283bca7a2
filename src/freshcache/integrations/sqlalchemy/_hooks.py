"""Session hooks: every write made through a session invalidates the cache, strictly after commit.

At each flush the inserted, updated and deleted objects are recorded with their changed
fields and old values, tagged with the savepoint they happened in (a rolled-back
savepoint drops its own). Bulk ``update()`` and ``delete()`` statements are caught in
``do_orm_execute``: the affected rows are read before (and, for an update, after) the
statement, up to a limit, past which the type's wide tags are invalidated instead.

Before the commit the transaction's tags are written to the outbox in the same database
transaction and, in strict mode, marked pending. After the commit they get new versions
and the outbox row is handed to the relay for deletion. The hooks are sync code; under an
AsyncSession they run inside SQLAlchemy's greenlet, where the async manager is awaited.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import Connection, Table, event, insert, select, text, tuple_
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction, sessionmaker
from sqlalchemy.util import await_only

from freshcache._async.manager import AsyncInvalidationManager
from freshcache._exceptions import ConfigurationError
from freshcache._invalidations import EntityChange, PendingWrite
from freshcache._kinds import require_kind
from freshcache._sync.manager import InvalidationManager
from freshcache.integrations.sqlalchemy._async.relay import AsyncOutboxRelay
from freshcache.integrations.sqlalchemy._models import (
    bulk_tag,
    change_of,
    column_keys,
    database_cascades,
    entity_type_of,
    load_columns,
    mapper_of,
    values_of,
)
from freshcache.integrations.sqlalchemy._outbox import outbox_row, require_outbox_once
from freshcache.integrations.sqlalchemy._sync.relay import OutboxRelay

log = logging.getLogger("freshcache")

_INFO_KEY = "freshcache"
# Set (transaction-local) by the application's sessions; freshcache's triggers skip their writes.
APPLICATION_SETTING = "freshcache.application"
Mode = Literal["strict", "commit"]


@dataclass
class _Intent:
    savepoint: SessionTransaction | None
    change: EntityChange | None = None
    tags: tuple[str, ...] = ()


@dataclass
class _Transaction:
    intents: list[_Intent] = field(default_factory=list)
    tags: tuple[str, ...] = ()
    changes: list[EntityChange] = field(default_factory=list)
    pending: PendingWrite | None = None
    outbox_id: str | None = None
    committing: bool = False  # before_commit finished: from here the outcome may be unknown


class SessionInvalidation:
    """Installs the hooks on a session factory; one instance per manager.

    ``mode="strict"`` (the default) marks tags pending before the commit so that no read
    goes backwards; ``"commit"`` only invalidates after it. ``outbox`` is the table from
    :func:`outbox_table`, or None to go without one (then a crash between commit and
    invalidation is not repaired). ``relay`` deletes applied outbox rows in batches.
    """

    def __init__(
        self,
        manager: AsyncInvalidationManager | InvalidationManager,
        *,
        mode: Mode = "strict",
        outbox: Table | None = None,
        relay: Any = None,
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
        event.listen(target, "do_orm_execute", self._do_orm_execute)
        event.listen(target, "before_commit", self._before_commit)
        event.listen(target, "after_commit", self._after_commit)
        event.listen(target, "after_soft_rollback", self._after_soft_rollback)
        event.listen(target, "after_transaction_end", self._after_transaction_end)
        if self.database_triggers:
            event.listen(target, "after_begin", self._after_begin)

    def _entity_type(self, model: type[Any]) -> str | None:
        try:
            return self._types[model]
        except KeyError:
            entity_type = entity_type_of(model)
            known = entity_type if entity_type in self.manager.rules.entity_types else None
            self._types[model] = known
            return known

    def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        result = method(*args, **kwargs)
        return await_only(result) if self.is_async else result

    @staticmethod
    def _state(session: Session) -> _Transaction:
        state = session.info.get(_INFO_KEY)
        if state is None:
            state = session.info[_INFO_KEY] = _Transaction()
        return state

    @staticmethod
    def _after_begin(
        session: Session, transaction: SessionTransaction, connection: Connection
    ) -> None:
        if connection.dialect.name == "postgresql":
            connection.execute(text(f"SET LOCAL {APPLICATION_SETTING} = 'on'"))

    # Recording

    def _before_flush(self, session: Session, flush_context: Any, instances: Any) -> None:
        for instance in session.dirty:
            if self._entity_type(type(instance)) is not None:
                load_columns(instance)
        deleted: dict[type[Any], list[dict[str, Any]]] = {}
        for instance in session.deleted:
            load_columns(instance)  # its own tags, and the keys its cascades follow
            deleted.setdefault(type(instance), []).append(values_of(instance))
        for model, rows in deleted.items():
            self._record_database_cascades(session, model, rows)

    def _record_database_cascades(
        self, session: Session, model: type[Any], rows: list[dict[str, Any]], depth: int = 0
    ) -> None:
        """Record what the database itself will delete or null when these rows go.

        ``ON DELETE CASCADE`` and ``SET NULL`` foreign keys change rows the session never
        sees (the ORM cascades only along relationships it is told of), so the children
        are read now, before the parents' DELETE, and cascades of cascades after them.
        """
        if not rows or depth > 8:
            return
        savepoint = session.get_nested_transaction()
        transaction = self._state(session)
        for child, child_key, parent_key, action in database_cascades(model):
            values = list({row[parent_key] for row in rows if row.get(parent_key) is not None})
            if not values:
                continue
            query = (
                select(*[getattr(child, key) for key in column_keys(child)])
                .where(getattr(child, child_key).in_(values))
                .limit(self.bulk_row_limit + 1)
            )
            found = [row._asdict() for row in session.execute(query)]
            child_type = self._entity_type(child)
            if child_type is not None and len(found) > self.bulk_row_limit:
                transaction.intents.append(_Intent(savepoint, tags=self._wide_tags(child_type)))
            elif child_type is not None:
                for row in found:
                    change = (
                        EntityChange(child_type, old=row)
                        if action == "CASCADE"
                        else EntityChange(
                            child_type,
                            old=row,
                            new={**row, child_key: None},
                            changed=frozenset({child_key}),
                        )
                    )
                    transaction.intents.append(_Intent(savepoint, change))
            if action == "CASCADE":
                self._record_database_cascades(
                    session, child, found[: self.bulk_row_limit], depth + 1
                )

    def _after_flush(self, session: Session, flush_context: Any) -> None:
        savepoint = session.get_nested_transaction()
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
                if change is not None:
                    intents.append(_Intent(savepoint, change))
        if intents:
            self._state(session).intents.extend(intents)

    def _do_orm_execute(self, state: ORMExecuteState) -> Any:
        if state.bind_mapper is None or not (state.is_insert or state.is_update or state.is_delete):
            return None
        model = state.bind_mapper.class_
        entity_type = self._entity_type(model)
        if entity_type is None:
            return None
        session = state.session
        savepoint = session.get_nested_transaction()
        transaction = self._state(session)
        if state.is_insert:
            # New rows (or upserts): every entry of the type may have changed, the cached
            # "not found" of the new ids included. The bulk tag reaches them all.
            transaction.intents.append(_Intent(savepoint, tags=self._wide_tags(entity_type)))
            return None
        keys = column_keys(model)
        primary = [
            mapper_of(model).get_property_by_column(c).key for c in mapper_of(model).primary_key
        ]
        where = state.statement.whereclause  # type: ignore[attr-defined]
        query = select(*[getattr(model, key) for key in keys]).limit(self.bulk_row_limit + 1)
        if where is not None:
            query = query.where(where)
        else:
            identities = _identities_in(state.parameters, primary)
            if identities is None:  # the whole table
                self._record_wide(transaction, savepoint, model, entity_type)
                return None
            query = query.where(tuple_(*[getattr(model, key) for key in primary]).in_(identities))
        before = [row._asdict() for row in session.execute(query)]
        if len(before) > self.bulk_row_limit:
            self._record_wide(transaction, savepoint, model, entity_type)
            return None
        if state.is_delete:
            self._record_database_cascades(session, model, before)
        result = state.invoke_statement()
        if state.is_delete:
            transaction.intents.extend(
                _Intent(savepoint, EntityChange(entity_type, old=row)) for row in before
            )
            return result
        identities = [tuple(row[key] for key in primary) for row in before]
        after = {}
        if identities:
            columns = tuple_(*[getattr(model, key) for key in primary])
            fetched = session.execute(
                select(*[getattr(model, key) for key in keys]).where(columns.in_(identities))
            )
            after = {tuple(row._asdict()[key] for key in primary): row._asdict() for row in fetched}
        for identity, old in zip(identities, before, strict=True):
            new = after.get(identity, old)
            transaction.intents.append(
                _Intent(savepoint, EntityChange(entity_type, old=old, new=new))
            )
        return result

    def _record_wide(
        self,
        transaction: _Transaction,
        savepoint: SessionTransaction | None,
        model: type[Any],
        entity_type: str,
    ) -> None:
        """Too many rows to read one by one: every entry of the type, and of what cascades from it."""
        for each in (entity_type, *self._cascading_types(model)):
            transaction.intents.append(_Intent(savepoint, tags=self._wide_tags(each)))

    def _cascading_types(
        self, model: type[Any], seen: frozenset[type[Any]] = frozenset()
    ) -> list[str]:
        """The entity types a delete of ``model`` rows can change through database cascades."""
        found: list[str] = []
        for child, _, _, action in database_cascades(model):
            if child in seen:
                continue
            child_type = self._entity_type(child)
            if child_type is not None:
                found.append(child_type)
            if action == "CASCADE":  # SET NULL keeps the child: nothing cascades further
                found.extend(self._cascading_types(child, seen | {model, child}))
        return list(dict.fromkeys(found))

    def _wide_tags(self, entity_type: str) -> tuple[str, ...]:
        """The tags for "any row of this type": its rules' templates without placeholders, its name, its bulk tag."""
        rules = self.manager.rules.rules_for(entity_type)
        wide = [template.text for rule in rules for template in rule.tags if not template.fields]
        return (*dict.fromkeys(wide), entity_type, bulk_tag(entity_type))

    def _after_soft_rollback(
        self, session: Session, previous_transaction: SessionTransaction
    ) -> None:
        state = session.info.get(_INFO_KEY)
        if state is None:
            return
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
                change = intent.change
                tags.update(
                    dict.fromkeys(
                        rules.tags_for(
                            change.entity_type,
                            new=change.new,
                            old=change.old,
                            changed=change.changed,
                        )
                    )
                )
                state.changes.append(change)
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


def _identities_in(parameters: Any, primary: list[str]) -> list[tuple[Any, ...]] | None:
    """The primary keys an ORM bulk statement by primary key names in its parameters, or None."""
    rows = [parameters] if isinstance(parameters, dict) else parameters
    if not rows or not isinstance(rows, list):
        return None
    try:
        return [tuple(row[key] for key in primary) for row in rows]
    except (KeyError, TypeError):
        return None


def _within(savepoint: SessionTransaction | None, ancestor: SessionTransaction) -> bool:
    transaction = savepoint
    while transaction is not None:
        if transaction is ancestor:
            return True
        transaction = transaction.parent
    return False


__all__ = ["PendingWrite", "SessionInvalidation"]
