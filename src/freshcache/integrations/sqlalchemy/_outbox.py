"""The transactional outbox: what a committed write still has to invalidate.

A write transaction inserts one row with its tags and its domain events, in the same
database transaction as its data. After the commit the tags are invalidated, the events
published, and the row is deleted in a batch, off the write's path; a row still there
after a grace period (the process died, the cache or the bus was down) is applied by the
relay. So a rolled-back transaction publishes nothing, and a committed one's events are
published at least once.
"""

from __future__ import annotations

import json
import logging
import time
import weakref
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Float,
    Index,
    MetaData,
    String,
    Table,
    Text,
    inspect,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.schema import CreateIndex, CreateTable, ExecutableDDLElement

from freshcache._entries import new_token
from freshcache._events import Event, EventTypes
from freshcache._exceptions import ConfigurationError, InvalidEventError, InvalidKeyError
from freshcache._keys import validate_tag
from freshcache.integrations.sqlalchemy._errors import reason_of

log = logging.getLogger("freshcache")

OUTBOX_TABLE = "freshcache_outbox"
# A relay whose pass failed waits twice as long as before, up to this, for the next one.
MAX_RETRY_DELAY = 30.0


def outbox_table(metadata: MetaData, name: str = OUTBOX_TABLE) -> Table:
    """The outbox table on ``metadata`` (include it in your Alembic metadata to migrate it)."""
    if name in metadata.tables:
        return metadata.tables[name]
    table = Table(
        name,
        metadata,
        Column("id", String(32), primary_key=True),
        # Unix seconds: the same type on every database, and what PostgreSQL triggers write.
        Column("created_at", Float, nullable=False),
        Column("tags", Text, nullable=False),  # a JSON list
        Column("entity_types", Text, nullable=False, default="[]"),
        Column("source", String(32), nullable=False, default="application"),
        # A JSON list of the transaction's events (Event.as_dict), or NULL for none.
        Column("events", Text, nullable=True),
    )
    Index(f"ix_{name}_created_at", table.c.created_at)
    return table


def require_outbox(connection: Connection, table: Table) -> None:
    """Raise ConfigurationError, saying how to create it, when ``table`` is not in the database."""
    inspector = inspect(connection)
    if inspector.has_table(table.name, schema=table.schema):
        present = {column["name"] for column in inspector.get_columns(table.name, table.schema)}
        missing = [column for column in table.columns if column.name not in present]
        if missing:
            # An outbox made before events were added to it: one column to add.
            alter = ";\n".join(
                f"ALTER TABLE {table.name} ADD COLUMN {column.name} "
                f"{column.type.compile(dialect=connection.dialect)}"
                for column in missing
            )
            raise ConfigurationError(
                f"the outbox table {table.name!r} lacks the columns "
                f"{', '.join(column.name for column in missing)}: migrate it with\n{alter};"
            )
        return
    statements: list[ExecutableDDLElement] = [CreateTable(table)]
    statements.extend(CreateIndex(index) for index in table.indexes)
    ddl = ";\n".join(str(each.compile(dialect=connection.dialect)).strip() for each in statements)
    raise ConfigurationError(
        f"the outbox table {table.name!r} does not exist in {connection.engine.url.database!r}: "
        "create it with outbox_table(metadata).create(engine), metadata.create_all(engine) "
        f"or your migrations. Its DDL:\n{ddl};"
    )


# Engines (and the outbox tables) found present: a commit checks once per engine.
_present: weakref.WeakKeyDictionary[Engine, set[str]] = weakref.WeakKeyDictionary()


def require_outbox_once(bind: Engine | Connection | None, table: Table) -> None:
    """:func:`require_outbox` on ``bind``, the first time each engine is seen with ``table``."""
    if bind is None:
        return
    seen = _present.setdefault(bind.engine, set())
    if table.key in seen:
        return
    if isinstance(bind, Connection):
        require_outbox(bind, table)
    else:
        try:
            connection = bind.connect()
        except SQLAlchemyError as exc:
            # An application may start before its database: its first commit checks.
            log.warning("could not check the outbox table %r now: %s", table.name, reason_of(exc))
            return
        with connection:
            require_outbox(connection, table)
    seen.add(table.key)


def retry_delay(delay: float) -> float:
    """How long a relay waits after a failed pass, given how long it waited before it."""
    return min(delay * 2, MAX_RETRY_DELAY)


def outbox_row(
    tags: Iterable[str],
    entity_types: Iterable[str],
    source: str = "transaction",
    events: Sequence[Event] = (),
) -> dict[str, Any]:
    return {
        "id": new_token(),
        "created_at": time.time(),
        "tags": json.dumps(list(tags)),
        "entity_types": json.dumps(sorted(set(entity_types))),
        "source": source,
        "events": json.dumps([event.as_dict() for event in events], separators=(",", ":"))
        if events
        else None,
    }


def events_of_rows(rows: Iterable[Any]) -> tuple[list[Event], int]:
    """The events the rows carry, in order, and how many could not be read.

    Their types were known to the process that wrote them: one this process has not
    registered is registered, not refused, so that the relay publishes what any writer
    committed. An event that cannot be read is logged whole, since no one can publish it.
    """
    events: list[Event] = []
    unreadable = 0
    for row in rows:
        if row.events is None:
            continue
        try:
            listed = json.loads(row.events)
            if not isinstance(listed, list):
                raise ValueError("not a list")
        except ValueError:
            listed = [row.events]
        for fields in listed:
            try:
                if not isinstance(fields, dict):
                    raise InvalidEventError(f"not an object but {fields!r}")
                EventTypes.register(fields.get("type"))  # type: ignore[arg-type]
                # Every field, as a transport would decode it: none made up here.
                events.append(Event.from_json(json.dumps(fields)))
            except InvalidEventError as exc:
                unreadable += 1
                log.error("outbox row %s: an event cannot be read (%s): %r", row.id, exc, fields)
    return events, unreadable


def tags_of_rows(rows: Iterable[Any]) -> tuple[list[str], int, int]:
    """The valid tags of the rows, how many tags were invalid, and how many rows unreadable.

    An invalid tag names nothing in the cache (fills validate their tags), so dropping it
    loses nothing. An unreadable row's tags are unknown.
    """
    tags: dict[str, None] = {}
    invalid = unreadable = 0
    for row in rows:
        try:
            listed = json.loads(row.tags)
            if not isinstance(listed, list):
                raise ValueError("not a list")
        except ValueError:
            unreadable += 1
            continue
        for tag in listed:
            try:
                tags[validate_tag(tag)] = None
            except InvalidKeyError:
                invalid += 1
    return list(tags), invalid, unreadable
