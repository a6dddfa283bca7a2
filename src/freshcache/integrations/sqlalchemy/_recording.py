"""What a hooked session's transaction has recorded, and the invalidations every recorder shares.

A transaction's intents (changes, or tags) each carry the savepoint they happened in, so
that a rolled-back savepoint drops its own. When rows cannot be known one by one, a type's
wide tags and its bulk tag stand for all of them, and for the types a delete of it cascades to.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Executable, select
from sqlalchemy.engine import Result
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.sql.dml import UpdateBase

from freshcache._async.manager import AsyncInvalidationManager
from freshcache._events import Event
from freshcache._invalidations import EntityChange, PendingWrite
from freshcache._sync.manager import InvalidationManager
from freshcache.integrations.sqlalchemy._models import (
    bulk_tag,
    column_keys,
    database_cascades,
    entity_type_of,
)
from freshcache.integrations.sqlalchemy._statements import MappedTable

log = logging.getLogger("freshcache")

_INFO_KEY = "freshcache"


@dataclass
class _Intent:
    savepoint: SessionTransaction | None
    change: EntityChange | None = None
    tags: tuple[str, ...] = ()
    event: Event | None = None  # to publish after the commit, dropped with its savepoint


@dataclass
class _Transaction:
    intents: list[_Intent] = field(default_factory=list)
    tags: tuple[str, ...] = ()
    changes: list[EntityChange] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
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


class Recorder:
    """The recording state of hooked sessions, and what every way of recording shares."""

    manager: AsyncInvalidationManager | InvalidationManager
    bulk_row_limit: int
    _types: dict[type[Any], str | None]

    def _entity_type(self, model: type[Any]) -> str | None:
        try:
            return self._types[model]
        except KeyError:
            entity_type = entity_type_of(model)
            known = entity_type if entity_type in self.manager.rules.entity_types else None
            self._types[model] = known
            return known

    @staticmethod
    def _state(session: Session) -> _Transaction:
        state = session.info.get(_INFO_KEY)
        if state is None:
            state = session.info[_INFO_KEY] = _Transaction()
        return state

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

    def _unfillable(self, change: EntityChange) -> tuple[str, ...]:
        """The tags of a change whose values cannot fill its rules' tags: the type's wide tags.

        A value the rules need is missing (a row gone before its old values could be
        read): the write must not fail for it, so every entry of the type goes instead.
        """
        log.warning("invalidating every %s: %s", change.entity_type, change)
        return self._wide_tags(change.entity_type)

    def _wide_tags(self, entity_type: str) -> tuple[str, ...]:
        """The tags for "any row of this type": its rules' templates without placeholders, its name, its bulk tag."""
        rules = self.manager.rules.rules_for(entity_type)
        wide = [template.text for rule in rules for template in rule.tags if not template.fields]
        return (*dict.fromkeys(wide), entity_type, bulk_tag(entity_type))
