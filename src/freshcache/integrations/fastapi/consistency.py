"""The consistency monitor's report: what it checked, what it found, the nines its sample allows."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from .sources import Sources


class InconsistencyExample(BaseModel):
    tag: str
    version: str
    invalidated_at: str
    seconds_after: float


class ConsistencyAnswer(BaseModel):
    """Counts of tags; the bound and the nines are at ``confidence``, never more than the sample allows."""

    sampled: int
    checked: int
    inconsistent: int
    skipped: int
    dropped: int
    errors: int
    queued: int
    consistency_ratio: float
    inconsistency_upper_bound: float
    consistency_nines: float
    confidence: float
    statement: str
    examples: list[InconsistencyExample]
    rate: float
    delay_seconds: float


class NoMonitor(LookupError):
    """The cache runs no consistency monitor (it is opt-in)."""


def report(sources: Sources) -> dict[str, Any]:
    monitor = None if sources.cache is None else sources.cache.monitor
    if monitor is None:
        raise NoMonitor(
            "no consistency monitor runs on this cache: it is opt-in "
            "(freshcache.ConsistencyMonitor(cache) or AsyncConsistencyMonitor(cache))"
        )
    return monitor.report()
