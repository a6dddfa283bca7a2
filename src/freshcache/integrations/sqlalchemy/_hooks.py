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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from sqlalchemy import (
    Connection,
    Engine,
    Executable,
    Table,
    event,
    insert,
    inspect,
    select,
    text,
    tuple_,
)
from sqlalchemy.engine import CursorResult, Result
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker
from sqlalchemy.sql.dml import Delete, Insert, Update, UpdateBase
from sqlalchemy.sql.elements import TextClause
from sqlalchemy.util import await_only

from freshcache._async.manager import AsyncInvalidationManager
from freshcache._exceptions import ConfigurationError
from freshcache._invalidations import EntityChange, PendingWrite
from freshcache._sync.manager import InvalidationManager
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
from freshcache.integrations.sqlalchemy._outbox import outbox_row
from freshcache.integrations.sqlalchemy._statements import (
    MappedTable,
    identities_in,
    inserted_rows,
    mapped_tables,
    tables_named,
)

log = logging.getLogger("freshcache")

_INFO_KEY = "freshcache"
# Set (transaction-local) by the application's sessions; freshcache's triggers skip their writes.
APPLICATION_SETTING = "freshcache.application"
Mode = Literal["strict", "commit"]
# An execution option: the mapped classes (or entity types) a statement writes out of sight.
WRITES_OPTION = "freshcache_writes"


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
    # The flush in progress: its statements are recorded from attribute history instead.
    # The legacy bulk methods set Session._flushing too, so that flag cannot tell them apart.
    flush: weakref.ref[Any] | None = None
    # Statements between before_execute and after_execute, by id of the statement sent.
    executing: dict[int, _Execution] = field(default_factory=dict)
    # Old values the session did not hold when they were set (expired, deferred), read at before_flush.
    unloaded_old: dict[int, tuple[Any, dict[str, Any]]] = field(default_factory=dict)


@dataclass
class _Execution:
    """An UPDATE or DELETE on its way: what was read before it, for after_execute."""

    statement: UpdateBase
    mapped: MappedTable
    before: list[dict[str, Any]]
    returning: bool  # RETURNING was added: the statement reports the rows it changed
    asked: list[tuple[Any, ...]] | None  # the primary keys it names, when it names them


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

    def _after_begin(
        self, session: Session, transaction: SessionTransaction, connection: Connection
    ) -> None:
        self._sessions[connection] = session
        self._listen(connection.engine)
        if self.database_triggers and connection.dialect.name == "postgresql":
            connection.execute(text(f"SET LOCAL {APPLICATION_SETTING} = 'on'"))

    def _listen(self, engine: Engine) -> None:
        """Listen on the engine's statements: every write passes there, flush or not, ORM or not."""
        if engine in self._engines:
            return
        with self._engines_lock:
            if engine in self._engines:
                return
            # An engine's listeners reach the connections it already made too.
            event.listen(engine, "before_execute", self._before_execute, retval=True)
            event.listen(engine, "after_execute", self._after_execute)
            event.listen(engine, "before_cursor_execute", self._before_cursor_execute)
            self._engines.add(engine)

    # Recording

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
            keys = [
                key
                for key in column_keys(type(instance))
                if (history := state.attrs[key].history).added and not history.deleted
            ]
            if keys:
                missing.setdefault(type(instance), []).append((instance, keys))
        for model, instances in missing.items():
            mapper = mapper_of(model)
            primary = [mapper.get_property_by_column(c).key for c in mapper.primary_key]
            wanted = sorted({key for _, keys in instances for key in keys})
            identities = [inspect(instance).key[1] for instance, _ in instances]
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

    def _record_database_cascades(
        self,
        session: Session,
        read: Callable[[Executable], Result[Any]],
        model: type[Any],
        rows: list[dict[str, Any]],
        depth: int = 0,
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
            found = [row._asdict() for row in read(query)]
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
                    session, read, child, found[: self.bulk_row_limit], depth + 1
                )

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

    def _flushing(self, session: Session) -> bool:
        """Whether a statement comes from the flush (not from a legacy bulk method)."""
        state = session.info.get(_INFO_KEY)
        return state is not None and state.flush is not None and state.flush() is not None

    # Statements that write outside the flush, seen on the session's connection

    def _before_execute(
        self,
        connection: Connection,
        statement: Any,
        multiparams: Sequence[Mapping[str, Any]],
        params: Mapping[str, Any],
        execution_options: Mapping[str, Any],
    ) -> tuple[Any, Sequence[Mapping[str, Any]], Mapping[str, Any]]:
        session = self._sessions.get(connection)
        # The flush's own statements are recorded by after_flush, from attribute history.
        if session is None or self._flushing(session):
            return statement, multiparams, params
        named = execution_options.get(WRITES_OPTION)
        if named is not None:
            self._record_named(session, named)
        if isinstance(statement, TextClause):
            self._record_tables(session, tables_named(statement.text))
            return statement, multiparams, params
        if not isinstance(statement, (Insert, Update, Delete)):
            return statement, multiparams, params
        known = [m for m in mapped_tables(statement.table) if self._entity_type(m.model)]
        rows = list(multiparams) if multiparams else [params]
        if isinstance(statement, Insert):
            for mapped in known:
                self._record_insert(session, statement, mapped, rows)
        elif len(known) == 1:
            statement = self._read_before(session, connection, statement, known[0], rows)
        else:  # several classes on one table (single-table inheritance): not read row by row
            for mapped in known:
                self._record_wide(session, mapped.model, mapped.entity_type)
        return statement, multiparams, params

    def _before_cursor_execute(
        self,
        connection: Connection,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: Any,
        executemany: bool,
    ) -> None:
        # Only SQL sent as a string (exec_driver_sql) arrives here uncompiled and unseen.
        if context is None or context.compiled is not None:
            return
        session = self._sessions.get(connection)
        if session is None or self._flushing(session):
            return
        named = context.execution_options.get(WRITES_OPTION)
        if named is not None:
            self._record_named(session, named)
        self._record_tables(session, tables_named(statement))

    def _record_named(self, session: Session, named: Any) -> None:
        """``freshcache_writes``: the types a statement changes out of sight, invalidated wide."""
        items = [named] if isinstance(named, (str, type)) else list(named)
        for item in items:
            entity_type = self._entity_type(item) if isinstance(item, type) else item
            if entity_type not in self.manager.rules.entity_types:
                raise ConfigurationError(
                    f"{WRITES_OPTION} names mapped classes or entity types the rules know "
                    f"({', '.join(sorted(self.manager.rules.entity_types))}), not {item!r}"
                )
            model = item if isinstance(item, type) else None
            self._record_wide(session, model, entity_type)

    def _record_tables(self, session: Session, tables: Iterable[Table]) -> None:
        for table in tables:
            for mapped in mapped_tables(table):
                entity_type = self._entity_type(mapped.model)
                if entity_type is not None:
                    self._record_wide(session, mapped.model, entity_type)

    def _record_insert(
        self,
        session: Session,
        statement: Insert,
        mapped: MappedTable,
        rows: Sequence[Mapping[str, Any]],
    ) -> None:
        entity_type = mapped.entity_type
        inserted = inserted_rows(statement, mapped, rows)
        savepoint = session.get_nested_transaction()
        transaction = self._state(session)
        if inserted is None:
            # An upsert, INSERT .. SELECT, or values made by the database: every entry of
            # the type may have changed, a cached "not found" of the new keys included.
            transaction.intents.append(_Intent(savepoint, tags=self._wide_tags(entity_type)))
            return
        transaction.intents.extend(
            _Intent(savepoint, EntityChange(entity_type, new=values)) for values in inserted
        )

    def _read_before(
        self,
        session: Session,
        connection: Connection,
        statement: Update | Delete,
        mapped: MappedTable,
        rows: Sequence[Mapping[str, Any]],
    ) -> Any:
        """Read, and lock, the rows an UPDATE or DELETE will change; have it report them too.

        ``FOR UPDATE`` keeps the rows read from changing until the commit, so their old
        values stay true. A row that starts to match between this read and the statement
        (another transaction's commit, under READ COMMITTED) is not locked and not read:
        RETURNING, where the database has it, names it, and after_execute falls back to
        the type's wide tags for it.
        """
        limit = self.bulk_row_limit
        columns = [column for _, column in mapped.columns]
        query = select(*columns).with_for_update()
        asked = identities_in(statement, mapped, rows)
        where = statement.whereclause
        if asked is not None and len(asked) <= limit:
            query = query.where(tuple_(*mapped.primary).in_(asked))
            query_params: Mapping[str, Any] = {}
        elif asked is None and where is not None and len(rows) == 1:
            query = query.where(where).limit(limit + 1)
            query_params = rows[0]
        else:  # the whole table, many parameter sets matched by other columns, or too many
            self._record_wide(session, mapped.model, mapped.entity_type)
            return statement
        before = [mapped.values(row._mapping) for row in connection.execute(query, query_params)]
        if len(before) > limit:
            self._record_wide(session, mapped.model, mapped.entity_type)
            return statement
        if isinstance(statement, Delete):
            self._record_database_cascades(session, connection.execute, mapped.model, before)
        returning = (
            len(rows) == 1
            and not statement._returning
            and not statement._return_defaults
            and mapped.primary[0].table.implicit_returning
            and (
                connection.dialect.delete_returning
                if isinstance(statement, Delete)
                else connection.dialect.update_returning
            )
        )
        if returning:
            # return_defaults, not returning: the rows go to returned_defaults_rows and the
            # caller's result stays what it would have been.
            statement = statement.return_defaults(
                *(columns if isinstance(statement, Delete) else mapped.primary)
            )
        transaction = self._state(session)
        transaction.executing[id(statement)] = _Execution(
            statement, mapped, before, returning, asked
        )
        return statement

    def _after_execute(
        self,
        connection: Connection,
        statement: Any,
        multiparams: Any,
        params: Any,
        execution_options: Any,
        result: Any,
    ) -> None:
        session = self._sessions.get(connection)
        if session is None:
            return
        state = session.info.get(_INFO_KEY)
        execution = None if state is None else state.executing.pop(id(statement), None)
        if execution is None or execution.statement is not statement:
            return
        self._record_changed(session, connection, execution, result)

    def _record_changed(
        self,
        session: Session,
        connection: Connection,
        execution: _Execution,
        result: CursorResult[Any],
    ) -> None:
        mapped, before = execution.mapped, execution.before
        entity_type = mapped.entity_type
        savepoint = session.get_nested_transaction()
        transaction = self._state(session)
        read = {mapped.identity_of(row): row for row in before}
        if execution.returning:
            reported = [row._mapping for row in result.returned_defaults_rows or ()]
            changed: list[tuple[Any, ...] | None] = [mapped.identity(row) for row in reported]
        else:
            reported = []
            changed = list(read)
            if (
                execution.asked is None
                and connection.dialect.supports_sane_rowcount
                and result.rowcount != len(before)
            ):
                changed.append(None)  # rows changed that were not read: some unknown
        if isinstance(execution.statement, Delete):
            if execution.returning:  # the rows deleted, as they were: exact
                old_rows = [mapped.values(row) for row in reported]
                unread = any(identity not in read for identity in changed)
            else:
                old_rows, unread = before, None in changed
            transaction.intents.extend(
                _Intent(savepoint, EntityChange(entity_type, old=old)) for old in old_rows
            )
            if unread and execution.returning:  # their children, cascaded, were not read
                for each in self._cascading_types(mapped.model):
                    transaction.intents.append(_Intent(savepoint, tags=self._wide_tags(each)))
            elif unread:
                self._record_wide(session, mapped.model, entity_type)
            return
        wanted = [identity for identity in changed if identity is not None]
        if execution.asked is not None:  # a key not found before may have been inserted since
            wanted = list(dict.fromkeys([*wanted, *execution.asked]))
        after: dict[tuple[Any, ...], dict[str, Any]] = {}
        if wanted:
            query = select(*[column for _, column in mapped.columns]).where(
                tuple_(*mapped.primary).in_(wanted)
            )
            for row in connection.execute(query):
                after[mapped.identity(row._mapping)] = mapped.values(row._mapping)
        unknown = None in changed or any(
            identity not in read for identity in (*changed, *after) if identity is not None
        )
        for identity in changed:
            old = read.get(identity) if identity is not None else None
            new = after.get(identity) if identity is not None else None
            if old is None or new is None:
                unknown = True  # changed unseen, or its primary key moved
                continue
            transaction.intents.append(
                _Intent(savepoint, EntityChange(entity_type, old=old, new=new))
            )
        if unknown:
            self._record_wide(session, mapped.model, entity_type)

    def _record_wide(self, session: Session, model: type[Any] | None, entity_type: str) -> None:
        """Rows not known one by one: every entry of the type, and of what cascades from it."""
        savepoint = session.get_nested_transaction()
        transaction = self._state(session)
        cascading = self._cascading_types(model) if model is not None else []
        for each in (entity_type, *cascading):
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
