"""Counters and latency histograms, with a JSON-ready snapshot and a reset; the table of them.

Counters are plain integer attributes: an increment on the hit path must cost tens of
nanoseconds, not a lock. Under the event loop they are exact; under many threads a
rare lost increment is the price of that speed.

:data:`METRICS` declares every metric once: its key in the JSON snapshot, its kind, its
help text and its Prometheus name. The snapshots hold exactly its keys, and the
Prometheus collector (and the dashboard) read the values from the snapshots through it,
so the two cannot disagree.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["counter", "gauge", "histogram"]


@dataclass(frozen=True)
class Metric:
    """One metric: ``key`` in the JSON snapshot, ``exposed`` as the Prometheus family's name.

    A ``label`` metric is a counter per label value (the snapshot holds a dict of them);
    a ``field`` metric exposes one field of the snapshot's dict (0 when it is None).
    """

    key: str
    kind: Kind
    help: str
    exposed: str
    label: str | None = None
    field: str | None = None


def _counters(scope: str, helps: dict[str, str]) -> tuple[Metric, ...]:
    return tuple(
        Metric(key, "counter", text, f"freshcache_{scope}_{key}") for key, text in helps.items()
    )


CACHE_METRICS: tuple[Metric, ...] = (
    *_counters(
        "cache",
        {
            "hits": "Reads answered from the cache.",
            "misses": "Reads the cache could not answer.",
            "sets": "Entries stored.",
            "loads": "Loader calls.",
            "load_errors": "Loader calls that raised.",
            "inflight_waits": "Callers that joined a load already running in this process.",
            "lease_waits": "Loads that waited for another process's lease.",
            "lease_timeouts": "Waits for a load that gave up and loaded without filling.",
            "stale_fills_rejected": "Fills refused because a tag moved during the load.",
            "pending_bypasses": "Reads that went past the cache because a write held a tag.",
            "tag_invalidations": "Tags given new versions.",
            "key_invalidations": "Keys asked to be deleted.",
            "pattern_invalidations": "Pattern invalidations.",
            "backend_errors": "Backend operations that failed.",
            "backend_skips": "Backend operations not sent: circuit breaker open, or reads suspended while invalidations are queued.",
            "decode_errors": "Stored entries that could not be decoded (read as misses).",
            "values_refused": "Loaded values the serializer cannot carry (served, not cached).",
        },
    ),
    Metric(
        "hit_rate", "gauge", "Hits over reads since the last reset.", "freshcache_cache_hit_ratio"
    ),
    Metric(
        "get_latency",
        "histogram",
        "Latency of reads (a sample: one in get_sample_every is timed).",
        "freshcache_cache_get_latency_seconds",
    ),
    Metric(
        "load_latency",
        "histogram",
        "Latency of loader calls.",
        "freshcache_cache_load_latency_seconds",
    ),
    Metric(
        "invalidate_latency",
        "histogram",
        "Latency of invalidations.",
        "freshcache_cache_invalidate_latency_seconds",
    ),
)

_MANAGER_COUNTERS = _counters(
    "manager",
    {
        "tag_invalidations": "Tags invalidated through the manager.",
        "key_invalidations": "Keys invalidated through the manager.",
        "pattern_invalidations": "Patterns invalidated through the manager.",
        "entity_invalidations": "Entity changes invalidated.",
        "failed_invalidations": "Invalidations that failed after their retries and went to the failure sink.",
        "retried_invalidations": "Retries of invalidations after a backend error.",
        "recovered_invalidations": "Queued invalidations applied later.",
        "unsettled_strict_commits": "Strict commits that returned before their queued invalidation was applied (after strict_wait).",
        "notification_errors": "Invalidation subscribers that raised.",
    },
)
# Counted by the failure sink; the manager's snapshot reports them.
_FAILURE_SINK = (
    Metric(
        "queue_overflows",
        "counter",
        "Times the failure queue overflowed into a flush of every entry.",
        "freshcache_manager_queue_overflows",
    ),
    Metric(
        "queued_invalidations",
        "gauge",
        "Failed invalidations waiting in the failure sink.",
        "freshcache_manager_queued_invalidations",
    ),
)
MANAGER_METRICS: tuple[Metric, ...] = (
    *_MANAGER_COUNTERS,
    *_FAILURE_SINK,
    Metric(
        "invalidations_by_entity_type",
        "counter",
        "Entity changes invalidated, by entity type.",
        "freshcache_manager_invalidations_by_entity_type",
        label="entity_type",
    ),
    Metric(
        "last_invalidation",
        "gauge",
        "When the last invalidation happened (Unix time; 0 if none since the last reset).",
        "freshcache_manager_last_invalidation_timestamp_seconds",
        field="timestamp",
    ),
    Metric(
        "invalidate_latency",
        "histogram",
        "Latency of invalidations, retries included.",
        "freshcache_manager_invalidate_latency_seconds",
    ),
)

RELAY_METRICS: tuple[Metric, ...] = (
    Metric(
        "outbox_pending",
        "gauge",
        "Outbox rows not yet applied and deleted.",
        "freshcache_outbox_pending",
    ),
    Metric(
        "relay_lag_seconds",
        "gauge",
        "Age of the oldest outbox row.",
        "freshcache_outbox_relay_lag_seconds",
    ),
    Metric(
        "relayed_rows",
        "counter",
        "Rows left behind that the relay applied.",
        "freshcache_outbox_relayed_rows",
    ),
    Metric(
        "deleted_rows",
        "counter",
        "Applied rows deleted in batches.",
        "freshcache_outbox_deleted_rows",
    ),
    Metric(
        "failed_runs", "counter", "Relay passes that failed.", "freshcache_outbox_relay_failed_runs"
    ),
    Metric(
        "invalid_tags",
        "counter",
        "Invalid tags found in outbox rows and dropped (they name nothing cached).",
        "freshcache_outbox_invalid_tags",
    ),
    Metric(
        "unreadable_rows",
        "counter",
        "Outbox rows that could not be read (every entry was dropped for them).",
        "freshcache_outbox_unreadable_rows",
    ),
    Metric(
        "relayed_events",
        "counter",
        "Domain events of rows left behind that the relay published.",
        "freshcache_outbox_relayed_events",
    ),
    Metric(
        "unreadable_events",
        "counter",
        "Domain events in outbox rows that could not be read (logged whole, not published).",
        "freshcache_outbox_unreadable_events",
    ),
    Metric(
        "relay_leader",
        "gauge",
        "1 when this process's relay scans for stale rows (elected, or not electing), 0 standing by.",
        "freshcache_outbox_relay_leader",
    ),
)

EVENT_METRICS: tuple[Metric, ...] = (
    *_counters(
        "events",
        {
            "published": "Events handed to the transport by this process.",
            "delivered": "Events delivered to this process's handlers.",
            "handler_calls": "Handler calls that returned normally.",
            "handler_timeouts": "Handler calls that took longer than handler_timeout.",
            "redeliveries": "Deliveries of an event that had been delivered before.",
            "dead_lettered": "Messages given up on and moved to the dead letters.",
        },
    ),
    Metric(
        "handler_failures",
        "counter",
        "Handler calls that raised or timed out, by event type.",
        "freshcache_events_handler_failures",
        label="event_type",
    ),
    Metric(
        "lag_seconds",
        "gauge",
        "Seconds between the last delivered event's occurred_at and its delivery.",
        "freshcache_events_last_lag_seconds",
        field="last",
    ),
    Metric(
        "lag",
        "histogram",
        "Seconds between an event's occurred_at and its delivery.",
        "freshcache_events_lag_seconds",
    ),
)

# The consistency monitor's (freshcache._consistency): counts of tags unless said otherwise.
MONITOR_METRICS: tuple[Metric, ...] = (
    *_counters(
        "monitor",
        {
            "sampled": "Tags of the invalidations sampled for a consistency check.",
            "checked": "Sampled tags checked after the delay.",
            "inconsistent": "Checked tags found back at their version from before the invalidation: entries from before it were served.",
            "skipped": "Sampled tags not checked: no version before the invalidation (nothing cached under them), or a strict write rolled back.",
            "dropped": "Sampled tags not checked because the check queue was full.",
            "errors": "Version reads of the monitor that failed (before an invalidation, or a check, retried).",
        },
    ),
    Metric("queued", "gauge", "Samples waiting for their check.", "freshcache_monitor_queued"),
    Metric(
        "consistency_ratio",
        "gauge",
        "Checks that found the invalidation held, over all checks (1 before any).",
        "freshcache_monitor_consistency_ratio",
    ),
    Metric(
        "inconsistency_upper_bound",
        "gauge",
        "95% upper confidence bound on the inconsistency rate that the checks allow.",
        "freshcache_monitor_inconsistency_upper_bound",
    ),
    Metric(
        "consistency_nines",
        "gauge",
        "Nines of consistency the checks support at 95% confidence: -log10 of the upper bound.",
        "freshcache_monitor_consistency_nines",
    ),
)

# By what reports them: a cache's metrics.snapshot(), a manager's snapshot() (its "cache"
# part aside), an outbox relay's stats(), an event bus's metrics.snapshot(), a cache's
# consistency monitor's snapshot().
METRICS: dict[str, tuple[Metric, ...]] = {
    "cache": CACHE_METRICS,
    "manager": MANAGER_METRICS,
    "relay": RELAY_METRICS,
    "events": EVENT_METRICS,
    "monitor": MONITOR_METRICS,
}


def _keys(table: tuple[Metric, ...], kind: Kind) -> tuple[str, ...]:
    return tuple(metric.key for metric in table if metric.kind == kind and metric.label is None)


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

    COUNTERS: tuple[str, ...] = _keys(CACHE_METRICS, "counter")
    HISTOGRAMS: tuple[str, ...] = _keys(CACHE_METRICS, "histogram")

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

    COUNTERS: tuple[str, ...] = _keys(_MANAGER_COUNTERS, "counter")

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
    unsettled_strict_commits: int
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
