"""Writes that never reach the flush, caught on the hooked session's connection.

The legacy bulk methods, ORM and Core ``insert()``/``update()``/``delete()``, ``text()``
and driver SQL all pass through the connection, so the engine's ``before_execute`` sees
each of them (``before_cursor_execute`` for driver SQL). A statement is recorded when its
connection belongs to a hooked session and it does not come from the flush, whose writes
are recorded from attribute history. An UPDATE or DELETE has its rows read and locked
before it and, where the database has RETURNING, reported by it; an INSERT gives its
rows from its parameters; whatever cannot be known row by row invalidates the type wide.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Table,
    event,
    false,
    select,
    tuple_,
    update,
)
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Delete, Insert, Update
from sqlalchemy.sql.elements import TextClause

from freshcache._exceptions import ConfigurationError
from freshcache._invalidations import EntityChange
from freshcache.integrations.sqlalchemy._recording import (
    _INFO_KEY,
    Recorder,
    _Execution,
    _Intent,
)
from freshcache.integrations.sqlalchemy._statements import (
    MappedTable,
    identities_in,
    inserted_rows,
    mapped_tables,
    sets_primary_key,
    tables_named,
)

# An execution option: the mapped classes (or entity types) a statement writes out of sight.
WRITES_OPTION = "freshcache_writes"
# Marks the hooks' own statements, which change nothing and are not recorded.
_OWN = "freshcache_own"


def lock_for_writing(connection: Connection, column: Column[Any]) -> None:
    """On SQLite, take the database's write lock now; elsewhere FOR UPDATE does the work.

    SQLite has no row locks and ignores FOR UPDATE, and its driver begins the transaction
    only at the first write: a write that changes nothing takes the lock, so that no other
    writer commits between a read of old values and the statement that changes them.
    """
    if connection.dialect.name == "sqlite":
        connection.execute(
            update(column.table).where(false()).values({column: column}),
            execution_options={_OWN: True},
        )


class StatementCapture(Recorder):
    """Listens on the engines of hooked sessions' connections, once per engine."""

    _sessions: weakref.WeakKeyDictionary[Connection, Session]
    _engines: weakref.WeakSet[Engine]
    _engines_lock: threading.Lock

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

    def _flushing(self, session: Session) -> bool:
        """Whether a statement comes from the flush (not from a legacy bulk method)."""
        state = session.info.get(_INFO_KEY)
        return state is not None and state.flush is not None and state.flush() is not None

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
        if session is None or self._flushing(session) or execution_options.get(_OWN):
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
        lock_for_writing(connection, mapped.primary[0])
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
                # RETURNING would report the new keys, not the rows read: the row count will do
                and not sets_primary_key(statement, mapped, rows)
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
        # None when RETURNING was not added, returned nothing, or was left out because the
        # statement sets the primary key itself (return_defaults skips columns it sets).
        reported_rows = result.returned_defaults_rows if execution.returning else None
        reported = [row._mapping for row in reported_rows or ()]
        changed: list[tuple[Any, ...] | None] = [mapped.identity(row) for row in reported]
        if reported_rows is None:
            changed = list(read)
            if (
                execution.asked is None
                and connection.dialect.supports_sane_rowcount
                and result.rowcount != len(before)
            ):
                changed.append(None)  # rows changed that were not read: some unknown
        if isinstance(execution.statement, Delete):
            if reported_rows is not None:  # the rows deleted, as they were: exact
                old_rows = [mapped.values(row) for row in reported]
                unread = any(identity not in read for identity in changed)
            else:
                old_rows, unread = before, None in changed
            transaction.intents.extend(
                _Intent(savepoint, EntityChange(entity_type, old=old)) for old in old_rows
            )
            if unread and reported_rows is not None:  # their children, cascaded, were not read
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
