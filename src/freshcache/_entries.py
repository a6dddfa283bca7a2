"""What a stored entry is, and the small values the backends hand to the cache.

An entry is a value together with the version each of its tags had when the load that
produced it began. On a byte store (Redis) it is written as a short text header followed
by the serialized payload::

    fc1 <serializer> <n>\\n
    <tag> <version>\\n          (n lines)
    <payload>

so that a client that knows the tags checks it after one MGET, and a Lua script that
does not can still parse it. Tags never hold white space, so the header is unambiguous.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Sequence
from typing import Any, Final

from ._exceptions import SerializationError

MAGIC: Final = b"fc1"
# A tag held by an open write transaction has this version; it never equals a real one
# (real versions are hex), so entries are misses and fills are refused while it holds.
PENDING_VERSION: Final = "!pending"


class _Missing(enum.Enum):
    """The type of :data:`MISSING`: a miss, distinct from a cached ``None``."""

    MISSING = "MISSING"

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Final = _Missing.MISSING


def new_version() -> str:
    """A fresh tag version: 64 random bits, so a lost or evicted version is never re-created equal."""
    return secrets.token_hex(8)


def new_token() -> str:
    """An identifier for a lease holder or a pending writer."""
    return secrets.token_hex(8)


class FillStatus(enum.Enum):
    HIT = "hit"  # a valid entry is there already (filled since the caller's read): its value
    ACQUIRED = "acquired"  # the caller holds the lease and the versions to fill with
    BUSY = "busy"  # another loader holds the lease
    PENDING = "pending"  # a write transaction holds a tag: read past the cache, do not fill


class FillTicket:
    """What ``begin_fill`` answers: the status and, when acquired, the tag versions; on a hit, the value."""

    __slots__ = ("status", "value", "versions")

    def __init__(self, status: FillStatus, versions: Sequence[str] = (), value: Any = None) -> None:
        self.status = status
        self.versions = tuple(versions)
        self.value = value

    def __repr__(self) -> str:
        return f"FillTicket({self.status.value}, {self.versions})"


def encode_entry(
    serializer_name: str, tags: Sequence[str], versions: Sequence[str], payload: bytes
) -> bytes:
    lines = [f"{MAGIC.decode()} {serializer_name} {len(tags)}"]
    lines.extend(f"{tag} {version}" for tag, version in zip(tags, versions, strict=True))
    return ("\n".join(lines) + "\n").encode() + payload


def decode_entry(data: bytes) -> tuple[str, list[tuple[bytes, bytes]], bytes]:
    """Split stored bytes into (serializer name, [(tag, version)], payload)."""
    try:
        end = data.index(b"\n")
        magic, serializer_name, count = data[:end].split(b" ")
        if magic != MAGIC:
            raise ValueError(f"unknown entry format {magic!r}")
        pairs = []
        position = end + 1
        for _ in range(int(count)):
            end = data.index(b"\n", position)
            tag, version = data[position:end].split(b" ")
            pairs.append((tag, version))
            position = end + 1
    except ValueError as exc:
        raise SerializationError(f"stored entry is not a freshcache entry: {exc}") from None
    return serializer_name.decode(), pairs, data[position:]
