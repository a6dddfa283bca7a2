"""Every cache and manager metric in the Prometheus exposition format, as ``freshcache_*``.

Needs prometheus-client (the ``fastapi`` or ``prometheus`` extra)::

    from prometheus_client import REGISTRY
    from freshcache.integrations.prometheus import FreshcacheCollector

    REGISTRY.register(FreshcacheCollector(cache=cache, manager=manager))

Several caches in one process are told apart by constant labels:
``FreshcacheCollector(cache=users_cache, labels={"cache": "users"})``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

from freshcache._extras import missing_extra

try:
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.registry import Collector
except ImportError as exc:
    raise missing_extra(exc, "prometheus", "freshcache.integrations.prometheus") from exc

from freshcache._metrics import (
    CACHE_METRICS,
    EVENT_METRICS,
    MANAGER_METRICS,
    MONITOR_METRICS,
    RELAY_METRICS,
    Histogram,
)
from freshcache._metrics import Metric as MetricInfo
from freshcache._relays import RelayStats

__all__ = ["FreshcacheCollector"]


class FreshcacheCollector(Collector):
    """A prometheus-client collector reading a cache's and a manager's metrics at scrape time.

    Every value comes from the same snapshot the JSON reports show, through the one table
    of metrics in :mod:`freshcache._metrics`.
    """

    def __init__(
        self,
        cache: Any = None,
        manager: Any = None,
        *,
        relay: RelayStats | None = None,
        bus: Any = None,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        if cache is None and manager is not None:
            cache = manager.cache
        self.cache = cache
        self.manager = manager
        self.relay = relay  # an outbox relay: its stats as of its last pass
        self.bus = bus  # an event bus: what it and its transport counted
        self._label_names = list(labels or {})
        self._label_values = [str(v) for v in (labels or {}).values()]

    def describe(self) -> list[Metric]:
        return []  # metric names depend on nothing but the table; checked at collect time

    def collect(self) -> Iterator[Metric]:
        if self.cache is not None:
            metrics = self.cache.metrics
            yield from self._families(CACHE_METRICS, metrics.snapshot(), metrics)
            monitor = getattr(self.cache, "monitor", None)  # a consistency monitor, when one runs
            if monitor is not None:
                yield from self._families(MONITOR_METRICS, monitor.snapshot(), monitor.metrics)
        if self.manager is not None:
            yield from self._families(
                MANAGER_METRICS, self.manager.snapshot(), self.manager.metrics
            )
        if self.relay is not None and self.relay.last_stats:
            yield from self._families(RELAY_METRICS, self.relay.last_stats, None)
        if self.bus is not None:
            metrics = self.bus.metrics
            yield from self._families(EVENT_METRICS, metrics.snapshot(), metrics)

    def _families(
        self, table: tuple[MetricInfo, ...], snapshot: Mapping[str, Any], source: Any
    ) -> Iterator[Metric]:
        for info in table:
            value = snapshot[info.key]
            if info.kind == "histogram":
                yield self._histogram(info, getattr(source, info.key))
            elif info.label is not None:
                family = CounterMetricFamily(
                    info.exposed, info.help, labels=[*self._label_names, info.label]
                )
                for label, count in sorted(value.items()):
                    family.add_metric([*self._label_values, label], count)
                yield family
            else:
                if info.field is not None:
                    value = 0.0 if value is None else value[info.field]
                kind = CounterMetricFamily if info.kind == "counter" else GaugeMetricFamily
                scalar = kind(info.exposed, info.help, labels=self._label_names)
                scalar.add_metric(self._label_values, value)
                yield scalar

    def _histogram(self, info: MetricInfo, histogram: Histogram) -> Metric:
        family = HistogramMetricFamily(info.exposed, info.help, labels=self._label_names)
        buckets = [
            ("+Inf" if math.isinf(bound) else repr(bound), count)
            for bound, count in histogram.cumulative()
        ]
        family.add_metric(self._label_values, buckets, sum_value=histogram.sum)
        return family
