"""Validation of keys, tags and patterns, and the templates that build them.

Keys and tags share one alphabet: printable ASCII without white space, without the glob
characters ``* ? [ ] \\`` (so that a pattern never matches more than it says) and without
``{ }`` (reserved for Redis Cluster hash tags and for templates).
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Mapping
from typing import Any

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


class Template:
    """A key or tag with ``{name}`` placeholders, such as ``"user:{id}:challenges"``."""

    __slots__ = ("fields", "kind", "text")

    def __init__(self, text: str, *, kind: str = "key") -> None:
        if not isinstance(text, str):
            raise InvalidKeyError(f"{kind} template must be a str, not {type(text).__name__}")
        fields: list[str] = []
        try:
            parsed = list(_FORMATTER.parse(text))
        except ValueError as exc:
            raise InvalidKeyError(f"{kind} template {text!r} is malformed: {exc}") from None
        for literal, field, spec, conversion in parsed:
            if literal:
                _check(f"{kind} template", literal, MAX_KEY_LENGTH, _FORBIDDEN)
            if field is None:
                continue
            if not field.isidentifier() or spec or conversion:
                raise InvalidKeyError(
                    f"{kind} template {text!r}: placeholder {{{field}}} must be a plain name "
                    "such as {id}, without attributes, indexes or format specs"
                )
            fields.append(field)
        self.text = text
        self.kind = kind
        self.fields = tuple(dict.fromkeys(fields))

    def format(self, values: Mapping[str, Any]) -> str:
        """Fill the placeholders from ``values`` and validate the result."""
        missing = [name for name in self.fields if name not in values]
        if missing:
            raise InvalidKeyError(
                f"{self.kind} template {self.text!r} needs {', '.join(missing)}; "
                f"got {', '.join(sorted(map(str, values))) or 'nothing'}"
            )
        for name in self.fields:
            value = values[name]
            if value is None or not isinstance(value, (str, int)) or isinstance(value, bool):
                raise InvalidKeyError(
                    f"{self.kind} template {self.text!r}: {name} must be a str or int, "
                    f"not {type(value).__name__} ({value!r})"
                )
        result = self.text.format_map({name: values[name] for name in self.fields})
        return _check(
            self.kind, result, MAX_TAG_LENGTH if self.kind == "tag" else MAX_KEY_LENGTH, _FORBIDDEN
        )

    def __repr__(self) -> str:
        return f"Template({self.text!r})"
