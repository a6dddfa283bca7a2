"""The recent-invalidations log: the last N invalidations, with entity, tags, source and time.

Fed by the manager's ``subscribe`` notifications (and by the router's own invalidations
when there is no manager). A deque with a bound: appends from the manager's thread and
reads from the event loop need no lock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from freshcache._invalidations import Invalidation


class RecentInvalidations:
    def __init__(self, size: int) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=size)
        self._unsubscribe: Callable[[], None] | None = None

    def follow(self, manager: Any) -> None:
        self._unsubscribe = manager.subscribe(self.record)

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def record(self, invalidation: Invalidation) -> None:
        self._entries.append(invalidation.as_dict())

    def latest(self, limit: int = 50) -> list[dict[str, Any]]:
        """Newest first."""
        entries = list(self._entries)
        entries.reverse()
        return entries[:limit]

    def touching(self, tag: str, limit: int = 20) -> list[dict[str, Any]]:
        """The latest invalidations that named ``tag``, newest first."""
        return [entry for entry in self.latest(len(self._entries)) if tag in entry["tags"]][:limit]
