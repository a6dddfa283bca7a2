"""What an invalidation is: the value the manager records, reports and hands to subscribers."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ._exceptions import ConfigurationError


@dataclass(frozen=True)
class EntityChange:
    """One inserted (``new``), deleted (``old``) or updated (both) entity."""

    entity_type: str
    new: Mapping[str, Any] | None = None
    old: Mapping[str, Any] | None = None
    changed: Iterable[str] | None = None  # kept as a frozenset

    def __post_init__(self) -> None:
        if self.changed is not None and not isinstance(self.changed, frozenset):
            if isinstance(self.changed, str):
                raise ConfigurationError(
                    f"changed= is a collection of field names, not the string {self.changed!r}"
                )
            object.__setattr__(self, "changed", frozenset(self.changed))


@dataclass(frozen=True)
class PendingWrite:
    """Phase one of a strict write: the tags held pending under ``token``."""

    token: str
    tags: tuple[str, ...]
    marked: bool  # False when the backend could not be reached: the commit still invalidates
    # time.monotonic() past which the write waits no more for the cache (the manager's strict_wait)
    deadline: float = 0.0


@dataclass(frozen=True)
class Invalidation:
    """What one call invalidated, by whom, and when."""

    tags: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    entity_types: tuple[str, ...] = ()
    source: str = "application"
    at: float = field(default_factory=time.time)
    applied: bool = True  # False: the backend failed and it was handed to the failure sink
    pending_token: str | None = None  # a strict write's: applying it releases the write's marks

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": datetime.fromtimestamp(self.at, timezone.utc).isoformat(),
            "timestamp": self.at,
            "entity_type": self.entity_types[0] if len(self.entity_types) == 1 else None,
            "entity_types": list(self.entity_types),
            "tags": list(self.tags),
            "keys": list(self.keys),
            "patterns": list(self.patterns),
            "source": self.source,
            "applied": self.applied,
        }
