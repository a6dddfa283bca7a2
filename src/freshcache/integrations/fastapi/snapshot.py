"""The JSON report of every metric, read through the one table in :mod:`freshcache._metrics`.

Each group's values are taken by the table's keys, so a metric added to the table
appears here, in Prometheus and on the dashboard at once. The founding document's fields
(``invalidations_by_entity_type``, ``pattern_invalidations``, ``key_invalidations``,
``failed_invalidations``, ``last_invalidation``) and the headline figures (hit rate,
latency percentiles, outbox backlog, event lag) are repeated at the top level by name.
"""

from __future__ import annotations

from typing import Any

from freshcache._metrics import METRICS

from .sources import Sources


def groups(sources: Sources) -> dict[str, dict[str, Any] | None]:
    """Each group's snapshot as its owner reports it (None for an owner not given)."""
    cache, manager, relay, bus = sources.cache, sources.manager, sources.relay, sources.bus
    monitor = None if cache is None else cache.monitor  # the opt-in consistency monitor
    manager_snapshot = None
    if manager is not None:
        manager_snapshot = manager.snapshot()
        manager_snapshot.pop("cache", None)
    return {
        "cache": None if cache is None else cache.metrics.snapshot(),
        "manager": manager_snapshot,
        # As of the relay's last pass: reading it costs no query.
        "relay": None if relay is None else (dict(relay.last_stats) or None),
        "events": None if bus is None else bus.snapshot(),
        "monitor": None if monitor is None else monitor.snapshot(),
    }


def metric_table() -> list[dict[str, Any]]:
    """Every metric's group, key, kind, help and Prometheus name: what the dashboard labels with."""
    return [
        {
            "group": group,
            "key": metric.key,
            "kind": metric.kind,
            "help": metric.help,
            "exposed": metric.exposed,
            "label": metric.label,
        }
        for group, table in METRICS.items()
        for metric in table
    ]


def report(sources: Sources) -> dict[str, Any]:
    """This process's metrics: by group, in the table's order, and the headline fields."""
    snapshots = groups(sources)
    out: dict[str, Any] = {"scope": "process"}
    for group, table in METRICS.items():
        snapshot = snapshots[group]
        out[group] = (
            None
            if snapshot is None
            else {m.key: snapshot[m.key] for m in table if m.key in snapshot}
        )
    out["events"] = snapshots["events"]
    out.update(headline(out))
    return out


def headline(out: dict[str, Any]) -> dict[str, Any]:
    cache = out.get("cache") or {}
    manager = out.get("manager") or {}
    relay = out.get("relay") or {}
    events = out.get("events") or {}
    latency = {
        f"{group}_{name}": {
            "p50_seconds": value.get("p50_seconds"),
            "p99_seconds": value.get("p99_seconds"),
            "count": value.get("count", 0),
        }
        for group, values in (("cache", cache), ("manager", manager))
        for name, value in values.items()
        if isinstance(value, dict) and "p50_seconds" in value
    }
    return {
        "hit_rate": cache.get("hit_rate", 0.0),
        "invalidations_by_entity_type": manager.get("invalidations_by_entity_type", {}),
        "pattern_invalidations": manager.get("pattern_invalidations", 0),
        "key_invalidations": manager.get("key_invalidations", 0),
        "failed_invalidations": manager.get("failed_invalidations", 0),
        "last_invalidation": manager.get("last_invalidation"),
        "latency": latency,
        "outbox_backlog": relay.get("outbox_pending"),
        "event_lag_seconds": (events.get("lag_seconds") or {}).get("last"),
    }


def reset(sources: Sources) -> list[str]:
    """Zero every counter and histogram (configuration kept); the groups reset."""
    done = []
    if sources.cache is not None:
        sources.cache.metrics.reset()
        done.append("cache")
    if sources.manager is not None:
        sources.manager.metrics.reset()
        done.append("manager")
    if sources.relay is not None:
        for metric in METRICS["relay"]:
            if metric.kind == "counter":
                setattr(sources.relay, metric.key, 0)
                if metric.key in sources.relay.last_stats:
                    sources.relay.last_stats[metric.key] = 0
        done.append("relay")
    if sources.bus is not None:
        sources.bus.metrics.reset()
        done.append("events")
    if sources.cache is not None and sources.cache.monitor is not None:
        sources.cache.monitor.metrics.reset()
        done.append("monitor")
    return done


def counters(sources: Sources) -> dict[str, int]:
    """Every counter of this process, flat (``group.key`` or ``group.key.label``): what clusters add up."""
    snapshots = groups(sources)
    tables: dict[str, list[str]] = {
        group: [m.key for m in table if m.kind == "counter"] for group, table in METRICS.items()
    }
    out: dict[str, int] = {}
    for group, keys in tables.items():
        snapshot = snapshots[group]
        if snapshot is None:
            continue
        for key in keys:
            value = snapshot.get(key)
            if isinstance(value, dict):
                out.update({f"{group}.{key}.{label}": int(n) for label, n in value.items()})
            elif value is not None:
                out[f"{group}.{key}"] = int(value)
    return out
