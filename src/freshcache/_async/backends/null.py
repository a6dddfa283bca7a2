"""The backend that stores nothing: caching off, behind the same cache, manager and metrics.

``none://`` (or ``none``) as a cache URL. Every read misses, a fill is accepted and
forgotten at once (a cache of capacity zero: ``fill`` answers True, as an LRU of size
zero would), invalidations and pending marks succeed with nothing to change, and a lease
is granted to every caller, so no reader ever waits for another process. Every read is
the loader's, fresh from the source, which is what the service compares caching against.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from freshcache._async.backends.base import AsyncBackend
from freshcache._entries import MISSING, FillStatus, FillTicket, _Missing, new_version
from freshcache._inspection import KeyState, TagState


class AsyncNullBackend(AsyncBackend):
    """A backend that never stores: every get misses, every write is a no-op that succeeds."""

    name = "none"

    async def get(self, key: str, tags: Sequence[str] | None = None) -> Any | _Missing:
        return MISSING

    async def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        return {}

    async def begin_fill(
        self, key: str, tags: Sequence[str], *, token: str, lease_ttl: float | None
    ) -> FillTicket:
        # Versions no later read compares against: nothing is ever stored with them.
        return FillTicket(FillStatus.ACQUIRED, [new_version() for _ in tags])

    async def fill(
        self,
        key: str,
        value: Any,
        tags: Sequence[str],
        versions: Sequence[str],
        *,
        ttl: float,
        token: str | None,
    ) -> bool:
        return True

    async def release_lease(self, key: str, token: str) -> None:
        return

    async def delete(self, keys: Sequence[str]) -> int:
        return 0

    async def delete_pattern(self, pattern: str) -> int:
        return 0

    async def invalidate_tags(self, tags: Sequence[str]) -> None:
        return

    async def mark_pending(self, tags: Sequence[str], *, token: str, ttl: float) -> None:
        return

    async def clear_pending(self, tags: Sequence[str], *, token: str, committed: bool) -> None:
        return

    async def tag_versions(self, tags: Sequence[str]) -> Mapping[str, str | None]:
        return dict.fromkeys(tags)

    async def clear(self) -> None:
        return

    async def ping(self) -> None:
        return

    async def describe_key(self, key: str) -> KeyState:
        return KeyState(key, False)

    async def describe_tag(self, tag: str) -> TagState:
        return TagState(tag, None)
