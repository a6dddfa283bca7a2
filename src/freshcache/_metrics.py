"""Counters and latency histograms, with a JSON-ready snapshot and a reset.

Counters are plain integer attributes: an increment on the hit path must cost tens of
nanoseconds, not a lock. Under the event loop they are exact; under many threads a
rare lost increment is the price of that speed.
"""

from __future__ import annotations

import bisect
import math
from typing import Any

# Seconds; the Prometheus defaults shifted down, because a cache answers in microseconds.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class Histogram:
    """A fixed-bucket histogram of durations in seconds."""

    __slots__ = ("bucket_counts", "buckets", "count", "sum")

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.buckets = buckets
        self.reset()

    def reset(self) -> None:
        self.bucket_counts = [0] * (len(self.buckets) + 1)  # the last one is +Inf
        self.count = 0
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.bucket_counts[bisect.bisect_left(self.buckets, seconds)] += 1
        self.count += 1
        self.sum += seconds

    def quantile(self, q: float) -> float | None:
        """The upper bound of the bucket holding quantile ``q``; None when empty."""
        if not self.count:
            return None
        rank = math.ceil(q * self.count)
        seen = 0
        for bound, count in zip((*self.buckets, math.inf), self.bucket_counts, strict=True):
            seen += count
            if seen >= rank:
                return bound
        return math.inf  # pragma: no cover - seen reaches count by the last bucket

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations at or below it), ending with +Inf."""
        out, seen = [], 0
        for bound, count in zip((*self.buckets, math.inf), self.bucket_counts, strict=True):
            seen += count
            out.append((bound, seen))
        return out

    def snapshot(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "sum_seconds": self.sum,
            "p50_seconds": self.quantile(0.5),
            "p99_seconds": self.quantile(0.99),
        }


class CacheMetrics:
    """What a cache counts. ``reset`` zeroes the counts, never the configuration."""

    COUNTERS: tuple[str, ...] = (
        "hits",
        "misses",
        "sets",
        "loads",
        "load_errors",
        "inflight_waits",
        "lease_waits",
        "lease_timeouts",
        "stale_fills_rejected",
        "pending_bypasses",
        "tag_invalidations",
        "key_invalidations",
        "pattern_invalidations",
        "backend_errors",
        "backend_skips",
        "decode_errors",
        "values_refused",
    )
    HISTOGRAMS: tuple[str, ...] = ("get_latency", "load_latency", "invalidate_latency")

    __slots__ = (*COUNTERS, *HISTOGRAMS, "get_sample_every")

    hits: int
    misses: int
    sets: int
    loads: int
    load_errors: int
    inflight_waits: int
    lease_waits: int
    lease_timeouts: int
    stale_fills_rejected: int
    pending_bypasses: int
    tag_invalidations: int
    key_invalidations: int
    pattern_invalidations: int
    backend_errors: int
    backend_skips: int
    decode_errors: int
    values_refused: int
    get_latency: Histogram
    load_latency: Histogram
    invalidate_latency: Histogram

    def __init__(self, *, get_sample_every: int = 16) -> None:
        # Timing every hit would cost two clock reads on the fastest path; one hit in
        # get_sample_every is timed, which keeps the quantiles and halves nothing else.
        self.get_sample_every = get_sample_every
        for name in self.HISTOGRAMS:
            setattr(self, name, Histogram())
        self.reset()

    def reset(self) -> None:
        for name in self.COUNTERS:
            setattr(self, name, 0)
        for name in self.HISTOGRAMS:
            getattr(self, name).reset()

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def snapshot(self) -> dict[str, Any]:
        """Every counter, the hit rate and the histograms, as plain JSON-ready values."""
        out: dict[str, Any] = {name: getattr(self, name) for name in self.COUNTERS}
        out["hit_rate"] = self.hit_rate
        for name in self.HISTOGRAMS:
            out[name] = getattr(self, name).snapshot()
        return out


class ManagerMetrics:
    """What an invalidation manager counts. ``reset`` zeroes counts, not configuration."""

    COUNTERS: tuple[str, ...] = (
        "tag_invalidations",
        "key_invalidations",
        "pattern_invalidations",
        "entity_invalidations",
        "failed_invalidations",
        "retried_invalidations",
        "recovered_invalidations",
        "queue_overflows",
        "notification_errors",
    )

    __slots__ = (
        *COUNTERS,
        "invalidate_latency",
        "invalidations_by_entity_type",
        "last_invalidation",
    )

    tag_invalidations: int
    key_invalidations: int
    pattern_invalidations: int
    entity_invalidations: int
    failed_invalidations: int
    retried_invalidations: int
    recovered_invalidations: int
    queue_overflows: int
    notification_errors: int

    def __init__(self) -> None:
        self.invalidate_latency = Histogram()
        self.reset()

    def reset(self) -> None:
        for name in self.COUNTERS:
            setattr(self, name, 0)
        self.invalidate_latency.reset()
        self.invalidations_by_entity_type: dict[str, int] = {}
        # The Invalidation itself: rendered (a date to format) only when a snapshot asks.
        self.last_invalidation: Any = None

    def snapshot(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: getattr(self, name) for name in self.COUNTERS}
        out["invalidations_by_entity_type"] = dict(
            sorted(self.invalidations_by_entity_type.items())
        )
        last = self.last_invalidation
        out["last_invalidation"] = None if last is None else last.as_dict()
        out["invalidate_latency"] = self.invalidate_latency.snapshot()
        return out
