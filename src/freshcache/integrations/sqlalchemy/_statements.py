"""What a statement sent on a hooked session's connection writes: the mapped classes of its
table, the rows it names by primary key, the rows an insert carries, the tables raw SQL names.

Everything here reads statements and parameters; nothing executes. The hooks decide what
to read from the database and what to invalidate.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, ColumnElement, Table, event
from sqlalchemy.orm import Mapper
from sqlalchemy.orm.mapper import _all_registries
from sqlalchemy.sql import operators
from sqlalchemy.sql.dml import Insert, UpdateBase
from sqlalchemy.sql.elements import BinaryExpression, BindParameter, BooleanClauseList

from freshcache.integrations.sqlalchemy._models import entity_type_of


@dataclass(frozen=True)
class MappedTable:
    """A mapped class seen from its table: its attribute keys and the columns behind them."""

    model: type[Any]
    entity_type: str
    columns: tuple[tuple[str, Column[Any]], ...]  # (attribute key, column) for this table's columns
    primary: tuple[Column[Any], ...]

    def values(self, row: Mapping[Any, Any]) -> dict[str, Any]:
        """A row keyed by columns (or column keys) as the attribute values the rules format."""
        return {key: row[column] for key, column in self.columns}

    def identity(self, row: Mapping[Any, Any]) -> tuple[Any, ...]:
        """The primary key of a row keyed by columns."""
        return tuple(row[column] for column in self.primary)

    def identity_of(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        """The primary key of attribute values."""
        keys = {column: key for key, column in self.columns}
        return tuple(values[keys[column]] for column in self.primary)


# Built from every registry's mappers; rebuilt when mappers are configured anew.
_TABLES: weakref.WeakKeyDictionary[Table, tuple[MappedTable, ...]] = weakref.WeakKeyDictionary()
_NAMES: dict[str, list[Table]] = {}


@event.listens_for(Mapper, "after_configured")
def _forget_tables() -> None:
    _TABLES.clear()
    _NAMES.clear()


def _build() -> None:
    found: dict[Table, list[MappedTable]] = {}
    for registry in _all_registries():
        for mapper in registry.mappers:
            table = mapper.local_table
            if not isinstance(table, Table):
                continue
            columns = tuple(
                (prop.key, prop.columns[0])
                for prop in mapper.column_attrs
                if isinstance(prop.columns[0], Column) and prop.columns[0].table is table
            )
            primary = tuple(
                column
                for column in mapper.primary_key
                if isinstance(column, Column) and column.table is table
            )
            if not primary:
                continue
            mapped = MappedTable(mapper.class_, entity_type_of(mapper.class_), columns, primary)
            found.setdefault(table, []).append(mapped)
    for table, mapped_tables in found.items():
        _TABLES[table] = tuple(mapped_tables)
        _NAMES.setdefault(table.name.lower(), []).append(table)


def mapped_tables(table: Any) -> tuple[MappedTable, ...]:
    """The mapped classes whose own table is ``table`` (none for a table no class maps, such as the outbox)."""
    table = table._deannotate() if hasattr(table, "_deannotate") else table
    if not isinstance(table, Table):
        return ()
    try:
        return _TABLES[table]
    except KeyError:
        pass
    _build()
    return _TABLES.setdefault(table, ())


def tables_named(sql: str) -> list[Table]:
    """The mapped tables raw SQL writes to, as far as its words tell: every mapped table it
    names, when it holds a writing verb. Generous on purpose (a table only read is counted
    too): colder, never stale."""
    if not _NAMES:
        _build()
    words = [
        next(group for group in match if group).lower()
        for match in _WORD.findall(_LITERAL.sub(" ", sql))
    ]
    writes = any(
        word in _WRITE_VERBS
        and not (word == "update" and index > 0 and words[index - 1] in ("for", "key"))
        for index, word in enumerate(words)
    )
    if not writes:
        return []
    return [table for word in dict.fromkeys(words) for table in _NAMES.get(word, ())]


_LITERAL = re.compile(r"'(?:[^']|'')*'")
_WORD = re.compile(r'"((?:[^"]|"")+)"|`([^`]+)`|\[([^\]]+)\]|([A-Za-z_][\w$]*)')
_WRITE_VERBS = frozenset({"insert", "update", "delete", "merge", "truncate", "replace", "upsert"})


def identities_in(
    statement: UpdateBase, mapped: MappedTable, rows: Sequence[Mapping[str, Any]]
) -> list[tuple[Any, ...]] | None:
    """The primary keys an UPDATE or DELETE names, one per parameter set, when its WHERE is an
    AND of ``primary key column = parameter`` (what the ORM's bulk methods and by-key
    statements send); None otherwise."""
    where = getattr(statement, "whereclause", None)
    if where is None:
        return None
    clauses: Iterable[Any] = (
        where.clauses
        if isinstance(where, BooleanClauseList) and where.operator is operators.and_
        else (where,)
    )
    binds: dict[Column[Any], BindParameter[Any]] = {}
    for clause in clauses:
        if not isinstance(clause, BinaryExpression) or clause.operator is not operators.eq:
            continue
        for column, other in ((clause.left, clause.right), (clause.right, clause.left)):
            original = _column(column)
            if (
                original is not None
                and original in mapped.primary
                and isinstance(other, BindParameter)
            ):
                binds[original] = other
    if len(binds) != len(mapped.primary):
        return None
    identities = []
    for row in rows:
        identity = []
        for column in mapped.primary:
            bind = binds[column]
            if bind.key in row:
                identity.append(row[bind.key])
            elif bind.value is not None and bind.callable is None:
                identity.append(bind.value)
            else:
                return None
        identities.append(tuple(identity))
    return identities


def _column(expression: Any) -> Column[Any] | None:
    if not isinstance(expression, ColumnElement):
        return None
    original = expression._deannotate()
    return original if isinstance(original, Column) else None


def sets_primary_key(
    statement: UpdateBase, mapped: MappedTable, rows: Sequence[Mapping[str, Any]]
) -> bool:
    """Whether an UPDATE may set a primary key column (a parameter of that name counts too)."""
    keys = {column.key for column in mapped.primary}
    inline = {getattr(key, "key", key) for key in getattr(statement, "_values", None) or {}}
    return bool(keys & inline) or any(keys & row.keys() for row in rows)


def inserted_rows(
    statement: Insert, mapped: MappedTable, rows: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]] | None:
    """The values of the rows a plain INSERT adds, from its parameters; None when they cannot
    be known here (inline values, INSERT .. SELECT, an upsert, a key or a default the
    database makes)."""
    if (
        statement._values
        or statement._multi_values
        or statement.select is not None
        or statement._post_values_clause is not None
        or not rows
    ):
        return None
    out = []
    for row in rows:
        values: dict[str, Any] = {}
        for key, column in mapped.columns:
            if column.key in row:
                values[key] = row[column.key]
            elif column.server_default is not None:
                return None
            elif column.default is None:
                values[key] = None
            elif column.default.is_scalar:
                values[key] = column.default.arg  # type: ignore[attr-defined]
            else:
                return None
        if any(values[key] is None for key, column in mapped.columns if column in mapped.primary):
            return None
        out.append(values)
    return out


__all__ = [
    "MappedTable",
    "identities_in",
    "inserted_rows",
    "mapped_tables",
    "sets_primary_key",
    "tables_named",
]
