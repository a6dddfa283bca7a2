"""Which values the JSON and msgpack serializers carry, and how they carry them exactly.

The rule, on every backend: a value comes back from the cache equal to the one stored and
of the same type, or it is refused before anything is stored, with the path of the part
that cannot be carried (``value['a'][3]: object is not supported by the json
serializer``).

Plain values (dict with str keys, list, str, int of at most 64 bits, finite float, bool,
None; exact types, not subclasses) are written as they are, so reading them back is one
``orjson.loads``. Anything else a value contains turns the whole value into a *tree*: the
same shape, where each non-plain part is a one-key object whose key names its type::

    {"~dt": "2024-05-01T12:30:00+00:00"}     datetime (naive, fixed offset)
    {"~dtz": [iso, "Europe/Paris"]}          datetime in a ZoneInfo zone
    {"~d": ...} {"~tm": ...} {"~td": [d, s, us]}    date, time, timedelta
    {"~u": hex} {"~dec": "9.90"}             UUID, Decimal (exponent kept)
    {"~b": base64} {"~ba": base64}           bytes, bytearray (raw bytes in msgpack)
    {"~t": [...]} {"~s": [...]} {"~fs": [...]}      tuple, set, frozenset
    {"~m": [[k, v], ...]}                    dict with a key that is not a str
    {"~i": "123..."} {"~f": "nan"}           int past 64 bits, non-finite float

A dict of the value's own with one key starting with ``~`` is written as ``~m`` too, so a
tree reads back one way only. Other types (objects, dataclasses, enum members) are
refused: silently turning them into dicts or strings is what this module exists to stop.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import enum
import uuid
import zoneinfo
from collections.abc import Callable
from typing import Any

from ._exceptions import SerializationError

_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1


def is_plain(value: Any) -> bool:
    """Whether ``value`` is plain JSON that orjson writes and reads back unchanged."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return bool(_INT_MIN <= value <= _INT_MAX)
    if kind is float:
        return bool(value - value == 0.0)  # False for nan and the infinities
    if kind is dict:
        return all(type(key) is str and is_plain(item) for key, item in value.items())
    if kind is list:
        return all(is_plain(item) for item in value)
    return False


class _Refused(Exception):
    """A part that cannot be carried; ``path`` grows as the walk unwinds."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.path: list[str] = []


def to_tree(value: Any, serializer: str, *, binary: bool) -> tuple[bool, Any]:
    """``(False, value)`` for a plain value, else ``(True, its tree)``; SerializationError naming
    the part that cannot be carried.

    ``binary``: bytes stay bytes in the tree (msgpack) instead of becoming base64 (JSON).
    """
    try:
        if is_plain(value):
            return False, value
        return True, _Walk(binary).tree(value)
    except _Refused as refused:
        path = "value" + "".join(reversed(refused.path))
        raise SerializationError(
            f"{path}: {refused.reason} is not supported by the {serializer} serializer"
        ) from None
    except RecursionError:
        raise SerializationError(
            f"value is nested too deeply (or contains itself) for the {serializer} serializer"
        ) from None


class _Walk:
    __slots__ = ("binary",)

    def __init__(self, binary: bool) -> None:
        self.binary = binary

    def tree(self, value: Any) -> Any:
        kind = type(value)
        if kind is str or kind is bool or value is None:
            return value
        if kind is int:
            return value if _INT_MIN <= value <= _INT_MAX else {"~i": self.digits(value)}
        if kind is float:
            return value if value - value == 0.0 else {"~f": repr(value)}
        if kind is list:
            return self.items(value)
        if kind is dict:
            return self.mapping(value)
        encode = _ENCODERS.get(kind)
        if encode is None:
            raise _Refused(_describe(value))
        return encode(self, value)

    def items(self, values: Any) -> list[Any]:
        out = []
        for index, item in enumerate(values):
            try:
                out.append(self.tree(item))
            except _Refused as refused:
                refused.path.append(f"[{index}]")
                raise
        return out

    def mapping(self, value: dict[Any, Any]) -> Any:
        plain_keys = all(type(key) is str for key in value) and not (
            len(value) == 1 and next(iter(value)).startswith("~")
        )
        if not plain_keys:
            return {"~m": [[self.key(key), self.item(key, item)] for key, item in value.items()]}
        return {key: self.item(key, item) for key, item in value.items()}

    def key(self, key: Any) -> Any:
        try:
            return self.tree(key)
        except _Refused as refused:
            refused.path.append(f".<key {key!r}>")
            raise

    def item(self, key: Any, item: Any) -> Any:
        try:
            return self.tree(item)
        except _Refused as refused:
            refused.path.append(f"[{key!r}]")
            raise

    def digits(self, value: int) -> str:
        try:
            return str(value)
        except ValueError:  # past sys.get_int_max_str_digits(): int() could not read it back
            raise _Refused("int of that many digits") from None

    def raw(self, data: bytes | bytearray) -> Any:
        return bytes(data) if self.binary else base64.b64encode(data).decode()


def _describe(value: Any) -> str:
    kind = type(value)
    name = kind.__qualname__
    if hasattr(kind, "__dataclass_fields__"):
        return f"dataclass {name} (cache dataclasses.asdict() of it, or use pickle)"
    if isinstance(value, enum.Enum):
        return f"enum member {name}.{value.name} (cache its .value)"
    if isinstance(value, (str, int, float, dict, list, tuple)):
        return f"{name}, a subclass of {kind.__mro__[1].__qualname__},"
    return name


def _datetime(walk: _Walk, value: datetime.datetime) -> Any:
    zone = value.tzinfo
    if zone is None or type(zone) is datetime.timezone:
        return {"~dt": value.isoformat()}
    if type(zone) is zoneinfo.ZoneInfo and zone.key:
        return {"~dtz": [value.isoformat(), zone.key]}
    raise _Refused(f"datetime with tzinfo {type(zone).__qualname__}")


def _time(walk: _Walk, value: datetime.time) -> Any:
    if value.tzinfo is not None and type(value.tzinfo) is not datetime.timezone:
        raise _Refused(f"time with tzinfo {type(value.tzinfo).__qualname__}")
    return {"~tm": value.isoformat()}


_ENCODERS: dict[type, Callable[[_Walk, Any], Any]] = {
    datetime.datetime: _datetime,
    datetime.date: lambda walk, value: {"~d": value.isoformat()},
    datetime.time: _time,
    datetime.timedelta: lambda walk, value: {
        "~td": [value.days, value.seconds, value.microseconds]
    },
    uuid.UUID: lambda walk, value: {"~u": value.hex},
    decimal.Decimal: lambda walk, value: {"~dec": str(value)},
    bytes: lambda walk, value: {"~b": walk.raw(value)},
    bytearray: lambda walk, value: {"~ba": walk.raw(value)},
    tuple: lambda walk, value: {"~t": walk.items(value)},
    set: lambda walk, value: {"~s": walk.items(value)},
    frozenset: lambda walk, value: {"~fs": walk.items(value)},
}


def from_tree(node: Any) -> Any:
    """The value a tree stands for; SerializationError for a tag this version does not know."""
    kind = type(node)
    if kind is list:
        return [from_tree(item) for item in node]
    if kind is not dict:
        return node
    if len(node) == 1:
        ((key, item),) = node.items()
        if key[:1] == "~":
            decode = _DECODERS.get(key)
            if decode is None:
                raise SerializationError(f"stored value has an unknown type tag {key!r}")
            try:
                return decode(item)
            except (TypeError, ValueError, KeyError, decimal.InvalidOperation) as exc:
                raise SerializationError(f"stored {key} value is malformed: {exc}") from None
    return {key: from_tree(item) for key, item in node.items()}


def _raw(item: Any) -> bytes:
    return item if type(item) is bytes else base64.b64decode(item, validate=True)


def _zoned(item: list[str]) -> datetime.datetime:
    iso, key = item
    # The offset in the text fixes the instant (and the fold); the zone gives it back its name.
    return datetime.datetime.fromisoformat(iso).astimezone(zoneinfo.ZoneInfo(key))


_DECODERS: dict[str, Callable[[Any], Any]] = {
    "~dt": datetime.datetime.fromisoformat,
    "~dtz": _zoned,
    "~d": datetime.date.fromisoformat,
    "~tm": datetime.time.fromisoformat,
    "~td": lambda item: datetime.timedelta(item[0], item[1], item[2]),
    "~u": uuid.UUID,
    "~dec": decimal.Decimal,
    "~b": _raw,
    "~ba": lambda item: bytearray(_raw(item)),
    "~t": lambda item: tuple(from_tree(x) for x in item),
    "~s": lambda item: {from_tree(x) for x in item},
    "~fs": lambda item: frozenset(from_tree(x) for x in item),
    "~m": lambda item: {from_tree(key): from_tree(value) for key, value in item},
    "~i": int,
    "~f": float,
}
