"""The domain events a repository publishes: ``<entity>.created``, ``.updated``, ``.deleted``.

Their data has the shape the invalidation handlers read, the shape the hooks record a
change in: ``{"new": {...}}`` for a creation, ``{"new", "old", "changed"}`` for an update
(``old`` holding the values before it, ``changed`` the fields that changed), ``{"old"}``
for a deletion. Column values become JSON the way they are written in tags (a date as
its ISO text, a Decimal or a UUID as its text), so a handler formats the same tags as the
hooks; bytes, which no tag holds, travel as hexadecimal.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import uuid
from collections.abc import Mapping
from typing import Any

from freshcache._events import Event, EventTypes

CREATED, UPDATED, DELETED = "created", "updated", "deleted"


def register_entity_events(entity_type: str) -> tuple[str, str, str]:
    """The three event types of ``entity_type``, made known (InvalidEventError if it cannot name one)."""
    return tuple(  # type: ignore[return-value]
        EventTypes.register(f"{entity_type}.{what}") for what in (CREATED, UPDATED, DELETED)
    )


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, Mapping):
        return {str(key): _json_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_json_value(item) for item in value]
    return str(value)


def json_values(values: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _json_value(value) for key, value in values.items()}


def created(entity_type: str, new: Mapping[str, Any]) -> Event:
    return Event(f"{entity_type}.{CREATED}", {"new": json_values(new)})


def updated(entity_type: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> Event | None:
    """The update from ``old`` to ``new``; None when no value changed."""
    changed = sorted(key for key in new if key in old and old[key] != new[key])
    if not changed:
        return None
    return Event(
        f"{entity_type}.{UPDATED}",
        {"new": json_values(new), "old": json_values(old), "changed": changed},
    )


def deleted(entity_type: str, old: Mapping[str, Any]) -> Event:
    return Event(f"{entity_type}.{DELETED}", {"old": json_values(old)})
