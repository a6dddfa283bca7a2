"""The values of the backend contract, the same for every backend, async or sync.

An entry is a value together with the version each of its tags had when the load that
produced it began. How a backend stores it is its own affair (Redis's format is in
:mod:`freshcache._redis.wire`); the cache sees only these values: a miss
(:data:`MISSING`), a fill's ticket and status, tag versions, tokens, and the version a
tag has while a writer holds it.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Sequence
from typing import Any, Final

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
