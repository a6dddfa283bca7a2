"""How an entity's column values travel through the cache and come back as they were.

The serializers carry every value SQLAlchemy's default column types produce (int, str,
bool, float, Decimal, date, datetime with or without a zone, time, timedelta, bytes,
UUID, JSON documents) and give it back equal and of the same type. Enum members are the
exception: no serializer but pickle carries them, since that would mean importing
classes named by stored bytes. A column of an ``Enum`` type with an enum class travels
as the member's name, which is also what the database stores.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import sqlalchemy

from freshcache.integrations.sqlalchemy._models import mapper_of

_ENUM_COLUMNS: dict[type[Any], dict[str, type[enum.Enum]]] = {}


def _enum_columns(model: type[Any]) -> dict[str, type[enum.Enum]]:
    known = _ENUM_COLUMNS.get(model)
    if known is not None:
        return known
    out: dict[str, type[enum.Enum]] = {}
    for attribute in mapper_of(model).column_attrs:
        column_type = attribute.columns[0].type
        if isinstance(column_type, sqlalchemy.Enum) and column_type.enum_class is not None:
            out[attribute.key] = column_type.enum_class
    _ENUM_COLUMNS[model] = out
    return out


def to_cached(model: type[Any], values: dict[str, Any]) -> dict[str, Any]:
    """``values`` as the cache carries them: enum members by name."""
    enums = _enum_columns(model)
    if not enums:
        return values
    return {
        key: value.name if key in enums and isinstance(value, enum.Enum) else value
        for key, value in values.items()
    }


def from_cached(model: type[Any], values: Mapping[str, Any]) -> Mapping[str, Any]:
    """The column values ``to_cached`` was given, from what it made of them."""
    enums = _enum_columns(model)
    if not enums:
        return values
    return {
        key: enums[key][value] if key in enums and isinstance(value, str) else value
        for key, value in values.items()
    }
