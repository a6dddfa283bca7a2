"""What the rest of freshcache asks of an outbox relay, without importing SQLAlchemy.

The session hooks hand it the rows whose invalidation is done; a metrics exporter reads
its stats. The async and the sync relay both are one, as is anything a test puts in their place.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class AppliedRows(Protocol):
    """Takes the outbox rows whose invalidation is done, to delete them."""

    def applied(self, row_id: str) -> None: ...


class RelayStats(Protocol):
    """Tells its stats as of its last pass (empty before the first)."""

    @property
    def last_stats(self) -> Mapping[str, Any]: ...
