"""Validation of keys, tags and patterns, and the templates that build them.

Keys and tags share one alphabet: printable ASCII without white space, without the glob
characters ``* ? [ ] \\`` (so that a pattern never matches more than it says) and without
``{ }`` (reserved for Redis Cluster hash tags and for templates).

A key or tag given as it is must be in that alphabet. A value formatted into a template is
*encoded* instead (:func:`encode_value`), so that any primary key, UUID or text with spaces
and accents makes a valid key, and two different values never make the same one.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import hashlib
import re
import string
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, cast
from urllib.parse import quote, quote_from_bytes, unquote, unquote_to_bytes

from ._exceptions import InvalidKeyError

MAX_KEY_LENGTH = 512
MAX_TAG_LENGTH = 256

_ALLOWED = re.compile(r"[!-~]+")  # printable ASCII, no space
_FORBIDDEN = set("*?[]\\{}")
_PATTERN_FORBIDDEN = set("{}")
_FORMATTER = string.Formatter()


def _check(kind: str, value: object, limit: int, forbidden: set[str]) -> str:
    if not isinstance(value, str):
        raise InvalidKeyError(f"{kind} must be a str, not {type(value).__name__}: {value!r}")
    if not value:
        raise InvalidKeyError(f"{kind} must not be empty")
    if len(value) > limit:
        raise InvalidKeyError(
            f"{kind} is {len(value)} characters long; the limit is {limit}: {value[:40]!r}..."
        )
    if _ALLOWED.fullmatch(value) is None or forbidden.intersection(value):
        position, char = next(
            (i, c) for i, c in enumerate(value) if c in forbidden or not ("!" <= c <= "~")
        )
        raise InvalidKeyError(
            f"{kind} {value!r} has {char!r} at position {position}; {kind}s use printable "
            f"ASCII without white space and without {''.join(sorted(forbidden))}"
        )
    return value


def validate_key(key: object) -> str:
    """Return ``key`` if it is a valid cache key, else raise :class:`InvalidKeyError`."""
    return _check("key", key, MAX_KEY_LENGTH, _FORBIDDEN)


def validate_tag(tag: object) -> str:
    """Return ``tag`` if it is a valid tag, else raise :class:`InvalidKeyError`."""
    return _check("tag", tag, MAX_TAG_LENGTH, _FORBIDDEN)


def validate_tags(tags: Iterable[str] | None) -> tuple[str, ...]:
    """Validate tags and return them without duplicates, in their first order."""
    if tags is None:
        return ()
    if isinstance(tags, str):
        raise InvalidKeyError(f"tags must be a list of strings, not the string {tags!r}")
    return tuple(dict.fromkeys(validate_tag(tag) for tag in tags))


def validate_pattern(pattern: object, *, confirm_all: bool = False) -> str:
    """Validate a glob pattern over keys; ``*`` alone needs ``confirm_all=True``."""
    value = _check("pattern", pattern, MAX_KEY_LENGTH, _PATTERN_FORBIDDEN)
    if set(value) == {"*"} and not confirm_all:
        raise InvalidKeyError(
            f"pattern {value!r} matches every key; pass confirm_all=True to invalidate them all"
        )
    return value


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """The regular expression for a glob, with Redis's rules (``*``, ``?``, ``[a-z]``, ``[^a]``, ``\\``).

    The memory backend matches exactly what ``SCAN MATCH`` would, not what fnmatch would
    (fnmatch negates with ``[!a]`` and may fold case).
    """
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        char = pattern[i]
        i += 1
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "\\" and i < n:
            out.append(re.escape(pattern[i]))
            i += 1
        elif char == "[":
            negate = i < n and pattern[i] == "^"
            i += negate
            members: list[str] = []
            while i < n and pattern[i] != "]":
                if pattern[i] == "\\" and i + 1 < n:
                    members.append(re.escape(pattern[i + 1]))
                    i += 2
                elif i + 2 < n and pattern[i + 1] == "-" and pattern[i + 2] != "]":
                    low, high = sorted((pattern[i], pattern[i + 2]))
                    members.append(f"{re.escape(low)}-{re.escape(high)}")
                    i += 3
                else:
                    members.append(re.escape(pattern[i]))
                    i += 1
            i += 1  # the closing bracket (Redis tolerates a missing one)
            body = "".join(members)
            out.append(f"[{'^' if negate else ''}{body}]" if body else ("." if negate else "(?!)"))
        else:
            out.append(re.escape(char))
    return re.compile("".join(out), re.DOTALL)


# Values formatted into keys and tags

# RFC 3986's unreserved characters: a value made only of them is written as it is.
_UNRESERVED = re.compile(r"[A-Za-z0-9._~-]+")
# Never produced by percent-encoding, so these markers cannot collide with any text.
_NONE, _EMPTY = "!none", "!empty"
_DIGEST = "!sha256:"
_DIGEST_LENGTH = len(_DIGEST) + 64
# A literal between two placeholders needs one of these, or "{a}-{b}" would give "x-y-z"
# for both ("x-y", "z") and ("x", "y-z"): no encoded value contains them.
_SEPARATORS = frozenset("\"#$&'()+,/:;<=>@^`|")
ENCODED_TYPES = (
    "str, int, bool, None, bytes, UUID, Decimal, float, datetime, date, time, timedelta, Enum"
)
_ENCODED_CLASSES = (str, int, bytes, bytearray, memoryview, uuid.UUID, decimal.Decimal, float,
                    datetime.date, datetime.time, datetime.timedelta, enum.Enum)  # fmt: skip


def encodes(kind: type[Any]) -> bool:
    """Whether :func:`encode_value` takes values of this type."""
    return issubclass(kind, _ENCODED_CLASSES)


def encode_value(value: object) -> str:
    """The text a value takes in a key or tag: reversible (with its type) and injective.

    Text is UTF-8, percent-encoded outside ``A-Z a-z 0-9 - . _ ~`` (``%`` and ``:``
    included); the empty text is ``!empty`` and None is ``!none``. Numbers are decimal and
    equal numbers agree (``5``, ``5.0``, ``Decimal("5.00")`` all give ``5``); bool is
    ``true``/``false``; a UUID its hyphenated lower-case form; bytes are percent-encoded
    bytes; dates and times ISO 8601 (an aware datetime in UTC), percent-encoded; a
    timedelta its microseconds, ``90us``; an Enum its value if it is an int or str, else
    its name. Values of different types may share a text (``5`` and ``"5"``): a column
    has one type, and a key given as a string formats as the number it names.
    """
    kind = type(value)
    if kind is int:
        return int.__repr__(value)
    if kind is str:
        text = cast(str, value)
        if _UNRESERVED.fullmatch(text):
            return text
        return quote(text, safe="", errors="surrogatepass") if text else _EMPTY
    return _encode_other(value)


def _encode_other(value: object) -> str:
    if value is None:
        return _NONE
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return encode_value(value.value if isinstance(value, (int, str)) else value.name)
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, str):
        return encode_value(str.__str__(value))
    if isinstance(value, (bytes, bytearray, memoryview)):
        return quote_from_bytes(bytes(value), safe="") if value else _EMPTY
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, float):
        return int.__repr__(int(value)) if value.is_integer() else quote(repr(value), safe="")
    if isinstance(value, decimal.Decimal):
        return _decimal_text(value)
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None and value.utcoffset() is not None:
            value = value.astimezone(datetime.timezone.utc)
        return quote(value.isoformat(), safe="")
    if isinstance(value, (datetime.date, datetime.time)):
        return quote(value.isoformat(), safe="")
    if isinstance(value, datetime.timedelta):
        return f"{value // datetime.timedelta(microseconds=1)}us"
    raise InvalidKeyError(
        f"a {type(value).__name__} ({value!r:.60}) cannot go into a key or tag; "
        f"placeholders take {ENCODED_TYPES}"
    )


def _decimal_text(value: decimal.Decimal) -> str:
    if not value.is_finite():
        return str(value)  # NaN, sNaN, Infinity, -Infinity: no character to encode
    if value.is_zero():
        return "0"
    # Not normalize(): it rounds to the context's precision, and two values would meet.
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    if -1000 <= exponent and value.adjusted() <= 1000:
        text = format(value, "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    # Far from 1, plain digits would run to millions: the digits without trailing zeros
    # and the exponent (plain text never holds an "E").
    significant = "".join(map(str, digits)).rstrip("0")
    exponent += len(digits) - len(significant)
    return f"{'-' if sign else ''}{significant}E{exponent}"


def decode_value(text: str, kind: type[Any]) -> Any:
    """The value of type ``kind`` that :func:`encode_value` wrote as ``text`` (equal, for numbers and aware datetimes)."""
    if text == _NONE:
        return None
    if issubclass(kind, bool):
        return text == "true"
    if issubclass(kind, enum.Enum):
        if issubclass(kind, (int, str)):
            return kind(decode_value(text, int if issubclass(kind, int) else str))
        return kind[decode_value(text, str)]
    if issubclass(kind, (bytes, bytearray, memoryview)):
        return kind(b"" if text == _EMPTY else unquote_to_bytes(text))
    plain = "" if text == _EMPTY else unquote(text, errors="surrogatepass")
    if issubclass(kind, datetime.timedelta):
        return kind(microseconds=int(plain.removesuffix("us")))
    if issubclass(kind, (datetime.date, datetime.time)):
        return kind.fromisoformat(plain)
    return kind(plain)


# How a value given as text (an id from a URL) becomes the type its field holds.
_FROM_TEXT: dict[type[Any], Any] = {
    int: int,
    float: float,
    decimal.Decimal: decimal.Decimal,
    uuid.UUID: uuid.UUID,
    datetime.date: datetime.date.fromisoformat,
    datetime.datetime: datetime.datetime.fromisoformat,
}


def parse_text(text: str, kind: type[Any]) -> Any:
    """``text`` as a ``kind`` (``"5"`` -> 5, a UUID's text -> UUID), or as it is for other types.

    Raises ValueError or ArithmeticError when the text is not one.
    """
    parse = _FROM_TEXT.get(kind)
    return text if parse is None else parse(text)


class Template:
    """A key or tag with ``{name}`` placeholders, such as ``"user:{id}:challenges"``.

    Each value is encoded by :func:`encode_value`; a result longer than the limit keeps
    its beginning and ends with ``!sha256:`` and the SHA-256 of the whole (so it stays
    distinct, and a pattern on its prefix still finds it).
    """

    __slots__ = ("_head", "_plan", "fields", "kind", "limit", "text")

    def __init__(self, text: str, *, kind: str = "key") -> None:
        if not isinstance(text, str):
            raise InvalidKeyError(f"{kind} template must be a str, not {type(text).__name__}")
        try:
            parsed = list(_FORMATTER.parse(text))
        except ValueError as exc:
            raise InvalidKeyError(f"{kind} template {text!r} is malformed: {exc}") from None
        self.limit = MAX_TAG_LENGTH if kind == "tag" else MAX_KEY_LENGTH
        parts: list[tuple[str, str | None]] = []
        previous: str | None = None
        for literal, field, spec, conversion in parsed:
            if literal:
                _check(f"{kind} template", literal, self.limit, _FORBIDDEN)
            if field is None:
                parts.append((literal, None))
                continue
            if not field.isidentifier() or spec or conversion:
                raise InvalidKeyError(
                    f"{kind} template {text!r}: placeholder {{{field}}} must be a plain name "
                    "such as {id}, without attributes, indexes or format specs"
                )
            if previous is not None and _SEPARATORS.isdisjoint(literal):
                raise InvalidKeyError(
                    f"{kind} template {text!r}: {{{previous}}} and {{{field}}} must be "
                    f"separated by one of {''.join(sorted(_SEPARATORS))} (such as ':'), which "
                    "no encoded value contains, or two pairs of values could give one "
                    f"{kind}"
                )
            parts.append((literal, field))
            previous = field
        literal_length = sum(len(literal) for literal, _ in parts)
        if not parts:
            raise InvalidKeyError(f"{kind} must not be empty")
        if literal_length > self.limit - _DIGEST_LENGTH:
            raise InvalidKeyError(
                f"{kind} template {text!r} has {literal_length} characters of its own; the "
                f"limit is {self.limit - _DIGEST_LENGTH}"
            )
        self.text = text
        self.kind = kind
        self.fields = tuple(dict.fromkeys(field for _, field in parts if field is not None))
        # The formatting plan, its literals checked above: the text before the first
        # placeholder, then each placeholder with the literal that follows it (only the
        # last part can be a literal alone).
        self._head = parts[0][0]
        self._plan = tuple(
            (field, parts[index + 1][0] if index + 1 < len(parts) else "")
            for index, (_, field) in enumerate(parts)
            if field is not None
        )

    def format(self, values: Mapping[str, Any]) -> str:
        """Fill the placeholders from ``values``, each encoded by :func:`encode_value`."""
        try:
            result = self._head
            for field, literal in self._plan:
                value = values[field]
                result += (
                    int.__repr__(value) if type(value) is int else encode_value(value)
                ) + literal
        except KeyError:
            missing = [name for name in self.fields if name not in values]
            raise InvalidKeyError(
                f"{self.kind} template {self.text!r} needs {', '.join(missing)}; "
                f"got {', '.join(sorted(map(str, values))) or 'nothing'}"
            ) from None
        except InvalidKeyError as exc:
            raise InvalidKeyError(f"{self.kind} template {self.text!r}: {exc}") from None
        if len(result) > self.limit:
            digest = hashlib.sha256(result.encode()).hexdigest()
            result = f"{result[: self.limit - _DIGEST_LENGTH]}{_DIGEST}{digest}"
        return result

    def __repr__(self) -> str:
        return f"Template({self.text!r})"
