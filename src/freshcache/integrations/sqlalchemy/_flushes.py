"""Writes recorded at the flush: inserted, updated and deleted objects, with their old values.

Each change is recorded with the savepoint it happened in, from the objects' attribute
history. What the history cannot tell is read before the flush: old values of columns set
while the session did not hold them, and the rows the database's own cascades will change.
"""

from __future__ import annotations

import weakref
from dataclasses import replace
from typing import Any

from sqlalchemy import inspect, select, tuple_
from sqlalchemy.orm import Session

from freshcache.integrations.sqlalchemy._capture import lock_for_writing
from freshcache.integrations.sqlalchemy._models import (
    change_of,
    column_keys,
    load_columns,
    mapper_of,
    values_of,
)
from freshcache.integrations.sqlalchemy._recording import (
    _INFO_KEY,
    Recorder,
    _Intent,
    _Transaction,
)


class FlushCapture(Recorder):
    """Records what each flush of a hooked session writes."""

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
