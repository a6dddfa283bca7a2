"""What a backend tells about one key or one tag, and why a read of the key would miss.

Read-only: describing a key touches no LRU order, prunes no holder and takes no lease,
so an operator can look without changing what they look at.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from freshcache._entries import PENDING_VERSION


@dataclass(frozen=True)
class TagState:
    """A tag's current version (None: never read or invalidated since) and its live pending holders."""

    tag: str
    version: str | None
    # token -> seconds until the mark lapses
    holders: dict[str, float] = field(default_factory=dict)

    @property
    def pending(self) -> bool:
        return self.version == PENDING_VERSION or bool(self.holders)

    def as_dict(self) -> dict[str, Any]:
        return {
            "tag": self.tag,
            "version": self.version,
            "pending": self.pending,
            "holders": [
                {"token": token, "ttl_seconds": left}
                for token, left in sorted(self.holders.items())
            ],
        }


@dataclass(frozen=True)
class KeyState:
    """A key's entry as stored (tags with their stored versions, TTL left, size) against the tags now."""

    key: str
    found: bool
    ttl_seconds: float | None = None
    size_bytes: int | None = None
    stored_versions: dict[str, str] = field(default_factory=dict)
    tags: tuple[TagState, ...] = ()
    lease_holder: str | None = None
    lease_ttl_seconds: float | None = None

    @property
    def would_hit(self) -> bool:
        return not self.reasons

    @property
    def reasons(self) -> list[str]:
        """Why a read now would miss: empty when it would hit."""
        if not self.found:
            return ["no entry: never filled, or expired, evicted, deleted or refused as stale"]
        out = []
        for state in self.tags:
            stored = self.stored_versions.get(state.tag)
            if state.pending:
                holders = ", ".join(sorted(state.holders)) or "a writer"
                out.append(
                    f"tag {state.tag!r} is held pending by {holders}: reads bypass the cache"
                )
            elif state.version is None:
                out.append(
                    f"tag {state.tag!r} has no version now (invalidated or evicted); "
                    f"the entry was stored at {stored}"
                )
            elif state.version != stored:
                out.append(f"tag {state.tag!r} moved: stored at {stored}, current {state.version}")
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "found": self.found,
            "would_hit": self.would_hit,
            "reasons": self.reasons,
            "ttl_seconds": self.ttl_seconds,
            "size_bytes": self.size_bytes,
            "tags": [
                {**state.as_dict(), "stored_version": self.stored_versions.get(state.tag)}
                for state in self.tags
            ],
            "lease": None
            if self.lease_holder is None
            else {"token": self.lease_holder, "ttl_seconds": self.lease_ttl_seconds},
        }
