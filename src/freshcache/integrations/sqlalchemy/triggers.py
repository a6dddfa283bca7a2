"""PostgreSQL triggers that write outbox rows for writes that bypass the application.

A write made through freshcache's sessions invalidates the cache itself; a ``psql`` session
or another service does not. With these triggers installed, such a write inserts an outbox
row with the tags :meth:`Rules.tags_for` would give for it, in the same transaction, and the
outbox relay applies it (after its ``grace``; give it a small one).

The triggers are **statement-level**, with transition tables (``REFERENCING OLD TABLE`` /
``NEW TABLE``): one statement writes one outbox row holding its distinct tags, so a bulk
``UPDATE`` of a million rows costs one row, not a million. The price is that an update's old
and new rows are paired by primary key; a row whose key changed has no partner, and its
field-level rules fire as if every field had changed (over-invalidation, never less).
``TRUNCATE`` fires no delete trigger: a ``BEFORE TRUNCATE`` trigger reads the rows instead.

Each trigger does nothing when ``freshcache.application`` is ``'on'``: the application's own
transactions set it (``SessionInvalidation(..., database_triggers=True)``) and their hooks
cover them. (Rows an ``ON DELETE CASCADE`` removes in such a transaction are skipped too:
PostgreSQL fires their triggers at the same depth as the statement's own, so the two cannot
be told apart.) Values are encoded into tags in SQL exactly as ``Template.format`` encodes them
(text percent-encoded, a long tag ending in its SHA-256), so any value makes a valid tag.

::

    install_triggers(engine, rules, [User, Challenge], outbox)      # in a transaction of its own
    await connection.run_sync(install_triggers, rules, models, outbox)  # AsyncConnection
    drop_triggers(engine, [User, Challenge])

In an Alembic migration: ``install_triggers(op.get_bind(), ...)``. :func:`trigger_ddl` gives
the plain SQL, to run as it is (``text()`` would read ``:name`` in a tag as a parameter).
The functions keep the ``search_path`` they were created with (``SET search_path FROM
CURRENT``), so writers with another path still reach the outbox. A role that writes the
tables needs ``INSERT`` on the outbox. PostgreSQL 13 or newer (``gen_random_uuid``).
"""

from __future__ import annotations

import hashlib
import json
import string
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import DDL, Connection, Engine, Table
from sqlalchemy.dialects import postgresql

from freshcache._exceptions import ConfigurationError
from freshcache._keys import MAX_TAG_LENGTH, Template
from freshcache._rules import Rules
from freshcache.integrations.sqlalchemy._hooks import APPLICATION_SETTING
from freshcache.integrations.sqlalchemy._models import entity_type_of, mapper_of

__all__ = ["drop_trigger_ddl", "drop_triggers", "install_triggers", "trigger_ddl"]

# Any PostgreSQL dialect quotes alike; the dialect class is not annotated.
_PREPARER = postgresql.dialect().identifier_preparer  # type: ignore[no-untyped-call]
_FORMATTER = string.Formatter()
_OLD, _NEW = "freshcache_old", "freshcache_new"  # the transition tables
_TIMING = {
    "insert": f"AFTER INSERT ON {{table}} REFERENCING NEW TABLE AS {_NEW}",
    "update": f"AFTER UPDATE ON {{table}} REFERENCING OLD TABLE AS {_OLD} NEW TABLE AS {_NEW}",
    "delete": f"AFTER DELETE ON {{table}} REFERENCING OLD TABLE AS {_OLD}",
    "truncate": "BEFORE TRUNCATE ON {table}",
}

# encode_value in SQL: text percent-encoded outside A-Z a-z 0-9 - . _ ~, the empty text
# "!empty", null left null; int, bool and uuid as ::text writes them, as Python does.
_SQL_ENCODED = (int, str, bool, uuid.UUID)
_ENCODE_TEXT = (
    "(CASE WHEN {value} ~ '^[A-Za-z0-9._~-]+$' THEN {value} WHEN {value} = '' THEN '!empty' "
    "ELSE (SELECT string_agg(CASE WHEN c.ch ~ '^[A-Za-z0-9._~-]$' THEN c.ch ELSE regexp_replace("
    "upper(encode(convert_to(c.ch, 'UTF8'), 'hex')), '(..)', '%\\1', 'g') END, '' ORDER BY c.i) "
    "FROM regexp_split_to_table({value}, '') WITH ORDINALITY AS c(ch, i)) END)"
)
# Template.format's digest of a tag over the limit.
_FIT = (
    f"CASE WHEN length({{tag}}) > {MAX_TAG_LENGTH} THEN left({{tag}}, {MAX_TAG_LENGTH - 72}) || "
    "'!sha256:' || encode(sha256(convert_to({tag}, 'UTF8')), 'hex') ELSE {tag} END"
)


def _literal(value: str) -> str:
    # Tags and entity types have no backslash, so doubling quotes is enough in any mode.
    return "'" + value.replace("'", "''") + "'"


def _function_name(table: Table, event: str) -> str:
    name = f"freshcache_{table.name}_{event}"
    if len(name.encode()) > 63:  # PostgreSQL would truncate it, and two tables could collide
        digest = hashlib.sha256(table.name.encode()).hexdigest()[:12]
        name = f"freshcache_{digest}_{event}"
    quoted = _PREPARER.quote(name)
    return f"{_PREPARER.quote_schema(table.schema)}.{quoted}" if table.schema else quoted


class _TableTriggers:
    """The SQL for one mapped class: its tags as expressions over a row alias."""

    def __init__(self, rules: Rules, model: type[Any]) -> None:
        self.rules = rules
        self.entity_type = entity_type_of(model)
        mapper = mapper_of(model)
        table = mapper.local_table
        if not isinstance(table, Table):
            raise ConfigurationError(f"{model.__name__} is not mapped to a table")
        self.table = table
        self.columns = {}
        for prop in mapper.column_attrs:
            column = prop.columns[0]
            if column.table is table:
                self.columns[prop.key] = column
        self.primary_key = [_PREPARER.quote(column.name) for column in mapper.primary_key]
        self.pairs = any(rule.fields for rule in rules.rules_for(self.entity_type)) or any(
            relation.fields for relation in rules.relations_for(self.entity_type)
        )

    def column(self, key: str, *, placeholder: bool = False) -> str:
        column = self.columns.get(key)
        if column is None:
            raise ConfigurationError(
                f"{self.entity_type}'s rules name {key!r}, which is not a column attribute of table {self.table.name}"
            )
        if placeholder:
            python_type = self.python_type(key)
            if python_type not in _SQL_ENCODED:
                raise ConfigurationError(
                    f"{self.entity_type}: tag placeholder {{{key}}} is a {python_type.__name__} column; "
                    "triggers format tags from str, int, bool and UUID columns only"
                )
        return _PREPARER.quote(column.name)

    def python_type(self, key: str) -> type[Any]:
        try:
            return self.columns[key].type.python_type
        except NotImplementedError:
            return str

    def _format(self, template: Template, alias: str, keys: Mapping[str, str]) -> str:
        """The tag as SQL, null when a value is null (``||`` propagates it), as Rules skips it."""
        parts = []
        for literal, field, _, _ in _FORMATTER.parse(template.text):
            if literal:
                parts.append(_literal(literal))
            if field is not None:
                value = f"{alias}.{self.column(keys[field], placeholder=True)}::text"
                encode = self.python_type(keys[field]) is str
                parts.append(_ENCODE_TEXT.format(value=value) if encode else value)
        return " || ".join(parts)

    def _fires(self, fields: frozenset[str] | None, alias: str, other: str | None) -> str | None:
        """When a field-level rule fires: an unpaired row, or one of its fields is distinct."""
        if fields is None or other is None:
            return None
        distinct = [
            f"{alias}.{c} IS DISTINCT FROM {other}.{c}" for c in map(self.column, sorted(fields))
        ]
        return f"({other}.{self.primary_key[0]} IS NULL OR {' OR '.join(distinct)})"

    def tag_expressions(self, alias: str, other: str | None) -> list[str]:
        """One SQL expression per tag the row ``alias`` touches, null where it touches none."""
        expressions: dict[str, None] = {}
        for rule in self.rules.rules_for(self.entity_type):
            fires = self._fires(rule.fields, alias, other)
            for template in rule.tags:
                tag = self._format(template, alias, {name: name for name in template.fields})
                expressions[_when(fires, tag)] = None
        for relation in self.rules.relations_for(self.entity_type):
            keys = dict(relation.keys)  # parent field -> child field
            # Rules skips the parent when any key is null, even one its template does not use.
            conditions = [f"{alias}.{self.column(child)} IS NOT NULL" for child in keys.values()]
            fires = self._fires(relation.fields, alias, other)
            condition = " AND ".join([*([fires] if fires else []), *conditions])
            for rule in self.rules.rules_for(relation.parent):
                for template in rule.tags:
                    if template.fields and set(template.fields) <= keys.keys():
                        expressions[_when(condition, self._format(template, alias, keys))] = None
        return list(expressions)

    def _select(self, source: str, alias: str, other_source: str | None = None) -> str:
        other = None
        joined = f"{source} AS {alias}"
        if other_source is not None and self.pairs:
            other = "n" if alias == "o" else "o"
            on = " AND ".join(f"{alias}.{c} = {other}.{c}" for c in self.primary_key)
            joined += f" LEFT JOIN {other_source} AS {other} ON {on}"
        values = ", ".join(f"({e})" for e in self.tag_expressions(alias, other))
        return f"SELECT v.tag FROM {joined} CROSS JOIN LATERAL (VALUES {values}) AS v(tag)"

    def changes(self, event: str) -> str:
        """A query of the tags (with nulls and repeats) that a statement of ``event`` touches."""
        if event == "insert":
            return self._select(_NEW, "n")
        if event == "delete":
            return self._select(_OLD, "o")
        if event == "truncate":
            return self._select(_PREPARER.format_table(self.table), "o")
        old, new = self._select(_OLD, "o", _NEW), self._select(_NEW, "n", _OLD)
        return f"{old}\n    UNION ALL\n    {new}"

    def function(self, event: str, outbox: Table) -> str:
        columns = ", ".join(
            _PREPARER.quote(outbox.c[name].name)
            for name in ("id", "created_at", "tags", "entity_types", "source")
        )
        body = f"""
DECLARE
  freshcache_tags text[];
  freshcache_bad text;
BEGIN
  IF current_setting({_literal(APPLICATION_SETTING)}, true) = 'on' THEN
    RETURN NULL;  -- the application's transaction: its session hooks cover it
  END IF;
  SELECT array_agg(DISTINCT {_FIT.format(tag="changed.tag")}) INTO freshcache_tags FROM (
    {self.changes(event)}
  ) AS changed(tag) WHERE changed.tag IS NOT NULL;
  IF freshcache_tags IS NULL THEN
    RETURN NULL;
  END IF;
  SELECT u.tag INTO freshcache_bad FROM unnest(freshcache_tags) AS u(tag)
  WHERE length(u.tag) > {MAX_TAG_LENGTH} OR u.tag !~ '^[!-~]+$'
     OR u.tag <> translate(u.tag, E'*?[]\\\\{{}}', '')
  LIMIT 1;
  IF freshcache_bad IS NOT NULL THEN
    RAISE EXCEPTION 'freshcache: this change of {self.entity_type} gives the invalid tag %', freshcache_bad
      USING ERRCODE = 'data_exception',
            HINT = 'tags are 1 to {MAX_TAG_LENGTH} printable ASCII characters, without white space or *?[]{{}}';
  END IF;
  INSERT INTO {_PREPARER.format_table(outbox)} ({columns})
  VALUES (replace(gen_random_uuid()::text, '-', ''), extract(epoch FROM clock_timestamp()),
          array_to_json(freshcache_tags)::text, {_literal(json.dumps([self.entity_type]))}, 'trigger');
  RETURN NULL;
END
"""
        quote = "$freshcache$"
        while quote in body:
            quote = quote[:-1] + "_$"
        return (
            f"CREATE OR REPLACE FUNCTION {_function_name(self.table, event)}() RETURNS trigger\n"
            f"LANGUAGE plpgsql SET search_path FROM CURRENT AS {quote}{body}{quote}"
        )

    def trigger(self, event: str) -> list[str]:
        name, table = f"freshcache_{event}", _PREPARER.format_table(self.table)
        timing = _TIMING[event].format(table=table)
        return [
            f"DROP TRIGGER IF EXISTS {name} ON {table}",
            f"CREATE TRIGGER {name} {timing} FOR EACH STATEMENT "
            f"EXECUTE FUNCTION {_function_name(self.table, event)}()",
        ]


def _when(condition: str | None, expression: str) -> str:
    return expression if condition is None else f"CASE WHEN {condition} THEN {expression} END"


def _covered(rules: Rules, models: Iterable[type[Any]]) -> list[_TableTriggers]:
    tables: dict[Any, str] = {}
    out = []
    for model in models:
        if entity_type_of(model) not in rules.entity_types:
            continue
        triggers = _TableTriggers(rules, model)
        if not triggers.tag_expressions("o", None):
            continue  # only relations to parents without a tag they could fill: nothing to write
        if triggers.table in tables:
            raise ConfigurationError(
                f"{model.__name__} and {tables[triggers.table]} share table {triggers.table.name}; "
                "triggers are per table, so give them one entity type"
            )
        tables[triggers.table] = model.__name__
        out.append(triggers)
    return out


def trigger_ddl(rules: Rules, models: Iterable[type[Any]], outbox: Table) -> list[str]:
    """The statements that install (or replace) the triggers of the ``models`` that have rules.

    Run them in one transaction, with the ``search_path`` your application uses.
    """
    statements = []
    for triggers in _covered(rules, models):
        for event in _TIMING:
            statements.append(triggers.function(event, outbox))
            statements.extend(triggers.trigger(event))
    return statements


def drop_trigger_ddl(models: Iterable[type[Any]]) -> list[str]:
    """The statements that drop the triggers and functions of ``models`` (those absent are skipped)."""
    statements: list[str] = []
    for model in models:
        table = mapper_of(model).local_table
        if isinstance(table, Table):
            statements.extend(
                f"DROP FUNCTION IF EXISTS {_function_name(table, event)}() CASCADE"
                for event in _TIMING
            )
    return statements


def _execute(bind: Engine | Connection, statements: list[str]) -> None:
    if bind.dialect.name != "postgresql":
        raise ConfigurationError(
            f"freshcache's triggers are for PostgreSQL, not {bind.dialect.name}"
        )
    if isinstance(bind, Engine):
        with bind.begin() as connection:
            _execute(connection, statements)
        return
    for statement in statements:
        # DDL, not text(): text() would read ":challenges" in a tag literal as a parameter.
        # DDL formats with %, so a literal % is doubled (and redoubled for drivers that need it).
        bind.execute(DDL(statement.replace("%", "%%")))  # type: ignore[no-untyped-call]


def install_triggers(
    bind: Engine | Connection, rules: Rules, models: Iterable[type[Any]], outbox: Table
) -> None:
    """Install the triggers: in a transaction of their own on an Engine, in the current one on a Connection."""
    _execute(bind, trigger_ddl(rules, models, outbox))


def drop_triggers(bind: Engine | Connection, models: Iterable[type[Any]]) -> None:
    """Drop the triggers and their functions, as :func:`install_triggers` takes its ``bind``."""
    _execute(bind, drop_trigger_ddl(models))
