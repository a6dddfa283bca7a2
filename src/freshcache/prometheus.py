"""Every cache and manager metric in the Prometheus exposition format, as ``freshcache_*``.

Needs prometheus-client (the ``fastapi`` or ``prometheus`` extra)::

    from prometheus_client import REGISTRY
    from freshcache.prometheus import FreshcacheCollector

    REGISTRY.register(FreshcacheCollector(cache=cache, manager=manager))

Several caches in one process are told apart by constant labels:
``FreshcacheCollector(cache=users_cache, labels={"cache": "users"})``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from freshcache._metrics import CacheMetrics, Histogram, ManagerMetrics

__all__ = ["FreshcacheCollector"]

_CACHE_HELP = {
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
    "decode_errors": "Stored entries that could not be decoded (read as misses).",
    "values_refused": "Loaded values the serializer cannot carry (served, not cached).",
    "backend_skips": "Backend operations not sent: circuit breaker open, or reads suspended while invalidations are queued.",
}
_MANAGER_HELP = {
    "tag_invalidations": "Tags invalidated through the manager.",
    "key_invalidations": "Keys invalidated through the manager.",
    "pattern_invalidations": "Patterns invalidated through the manager.",
    "entity_invalidations": "Entity changes invalidated.",
    "failed_invalidations": "Invalidations that failed after their retries and went to the failure sink.",
    "retried_invalidations": "Retries of invalidations after a backend error.",
    "recovered_invalidations": "Queued invalidations applied later.",
    "queue_overflows": "Times the failure queue overflowed into a flush of every entry.",
    "notification_errors": "Invalidation subscribers that raised.",
}


class FreshcacheCollector(Collector):
    """A prometheus-client collector reading a cache's and a manager's metrics at scrape time."""

    def __init__(
        self,
        cache: Any = None,
        manager: Any = None,
        *,
        relay: Any = None,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        if cache is None and manager is not None:
            cache = manager.cache
        self.cache = cache
        self.manager = manager
        self.relay = relay  # an outbox relay: its stats as of its last background pass
        self._label_names = list(labels or {})
        self._label_values = [str(v) for v in (labels or {}).values()]

    def describe(self) -> list[Metric]:
        return []  # metric names depend on nothing but this module; checked at collect time

    def collect(self) -> Iterator[Metric]:
        if self.cache is not None:
            yield from self._cache_metrics(self.cache.metrics)
        if self.manager is not None:
            yield from self._manager_metrics(self.manager)
        if self.relay is not None and self.relay.last_stats:
            yield from self._relay_metrics(self.relay.last_stats)

    def _counter(self, name: str, documentation: str, value: float) -> Metric:
        family = CounterMetricFamily(name, documentation, labels=self._label_names)
        family.add_metric(self._label_values, value)
        return family

    def _gauge(self, name: str, documentation: str, value: float) -> Metric:
        family = GaugeMetricFamily(name, documentation, labels=self._label_names)
        family.add_metric(self._label_values, value)
        return family

    def _histogram(self, name: str, documentation: str, histogram: Histogram) -> Metric:
        family = HistogramMetricFamily(name, documentation, labels=self._label_names)
        buckets = [
            ("+Inf" if math.isinf(bound) else repr(bound), count)
            for bound, count in histogram.cumulative()
        ]
        family.add_metric(self._label_values, buckets, sum_value=histogram.sum)
        return family

    def _cache_metrics(self, metrics: CacheMetrics) -> Iterator[Metric]:
        for name in CacheMetrics.COUNTERS:
            yield self._counter(
                f"freshcache_cache_{name}", _CACHE_HELP[name], getattr(metrics, name)
            )
        yield self._gauge(
            "freshcache_cache_hit_ratio", "Hits over reads since the last reset.", metrics.hit_rate
        )
        yield self._histogram(
            "freshcache_cache_get_latency_seconds",
            f"Latency of reads (one in {metrics.get_sample_every} is timed).",
            metrics.get_latency,
        )
        yield self._histogram(
            "freshcache_cache_load_latency_seconds",
            "Latency of loader calls.",
            metrics.load_latency,
        )
        yield self._histogram(
            "freshcache_cache_invalidate_latency_seconds",
            "Latency of invalidations.",
            metrics.invalidate_latency,
        )

    def _relay_metrics(self, stats: Mapping[str, Any]) -> Iterator[Metric]:
        yield self._gauge(
            "freshcache_outbox_pending",
            "Outbox rows not yet applied and deleted.",
            stats["outbox_pending"],
        )
        yield self._gauge(
            "freshcache_outbox_relay_lag_seconds",
            "Age of the oldest outbox row.",
            stats["relay_lag_seconds"],
        )
        yield self._counter(
            "freshcache_outbox_relayed_rows",
            "Rows left behind that the relay applied.",
            stats["relayed_rows"],
        )
        yield self._counter(
            "freshcache_outbox_deleted_rows",
            "Applied rows deleted in batches.",
            stats["deleted_rows"],
        )
        yield self._counter(
            "freshcache_outbox_relay_failed_runs", "Relay passes that failed.", stats["failed_runs"]
        )

    def _manager_metrics(self, manager: Any) -> Iterator[Metric]:
        metrics: ManagerMetrics = manager.metrics
        for name in ManagerMetrics.COUNTERS:
            yield self._counter(
                f"freshcache_manager_{name}", _MANAGER_HELP[name], getattr(metrics, name)
            )
        by_type = CounterMetricFamily(
            "freshcache_manager_invalidations_by_entity_type",
            "Entity changes invalidated, by entity type.",
            labels=[*self._label_names, "entity_type"],
        )
        for entity_type, count in sorted(metrics.invalidations_by_entity_type.items()):
            by_type.add_metric([*self._label_values, entity_type], count)
        yield by_type
        yield self._gauge(
            "freshcache_manager_queued_invalidations",
            "Failed invalidations waiting in the failure sink.",
            len(manager.failure_sink),
        )
        last = metrics.last_invalidation
        yield self._gauge(
            "freshcache_manager_last_invalidation_timestamp_seconds",
            "When the last invalidation happened (Unix time; 0 if none since the last reset).",
            0.0 if last is None else last.at,
        )
        yield self._histogram(
            "freshcache_manager_invalidate_latency_seconds",
            "Latency of invalidations, retries included.",
            metrics.invalidate_latency,
        )
