"""One table of metrics: the JSON snapshots and the Prometheus exposition report the same values."""

from __future__ import annotations

import math
import shutil
import subprocess
import threading
import time
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from sqlalchemy import MetaData, insert

from freshcache import (
    Cache,
    ConsistencyMonitor,
    Event,
    EventBus,
    EventTypes,
    Invalidation,
    InvalidationManager,
    Rules,
)
from freshcache._metrics import (
    CACHE_METRICS,
    EVENT_METRICS,
    MANAGER_METRICS,
    METRICS,
    MONITOR_METRICS,
    RELAY_METRICS,
    Metric,
)
from freshcache.integrations.prometheus import FreshcacheCollector
from freshcache.integrations.sqlalchemy import OutboxRelay, outbox_table
from freshcache.integrations.sqlalchemy._outbox import outbox_row

from .conftest import REQUIRE_SERVICES
from .databases import Database
from .redis_server import RedisServer


def exposed_value(metric: Metric, samples: list[Sample]) -> Any:
    """The value Prometheus shows for one metric, in the shape of its snapshot value."""
    by_name = {sample.name: sample for sample in samples if not sample.labels.get("entity_type")}
    if metric.kind == "histogram":
        return (
            by_name[f"{metric.exposed}_count"].value,
            by_name[f"{metric.exposed}_sum"].value,
        )
    if metric.label is not None:
        return {
            sample.labels[metric.label]: sample.value
            for sample in samples
            if sample.name == f"{metric.exposed}_total"
        }
    suffix = "_total" if metric.kind == "counter" else ""
    return by_name[f"{metric.exposed}{suffix}"].value


def snapshot_value(metric: Metric, value: Any) -> Any:
    """The same metric read from its JSON snapshot value."""
    if metric.kind == "histogram":
        return (value["count"], value["sum_seconds"])
    if metric.field is not None:
        return 0.0 if value is None else value[metric.field]
    return value


def test_every_metric_is_the_same_in_the_snapshot_and_in_prometheus(
    private_redis: RedisServer, postgres: Database
) -> None:
    """After hits, misses, loads, a loader error, an outage whose queued invalidation overflowed and recovered, a relay pass, events with a failing handler, and consistency checks, every snapshot value equals its Prometheus value, and neither has a metric the other lacks."""
    cache = Cache.from_url(f"{private_redis.url}?namespace=table")
    monitor = ConsistencyMonitor(cache, rate=1.0, delay=3600)  # checked when drained
    manager = InvalidationManager(cache, Rules().entity("user", tags=["user:{id}"]), retries=0)
    manager.failure_sink.max_items = 2  # type: ignore[attr-defined]
    recovered = threading.Event()

    def on_invalidation(invalidation: Invalidation) -> None:
        if invalidation.source == "retry queue":
            recovered.set()

    manager.subscribe(on_invalidation)
    for _ in range(3):
        assert {"id": 1} == cache.get_or_load("user:1", lambda: {"id": 1}, tags=["user:1"])

    def broken() -> None:
        raise RuntimeError("the database is down")

    with pytest.raises(RuntimeError):
        cache.get_or_load("user:2", broken, tags=["user:2"])
    manager.invalidate_entity("user", new={"id": 1})
    private_redis.stop()
    assert not manager.invalidate_tags(["user:3", "user:4", "user:5"]).applied  # overflows
    assert {"id": 6} == cache.get_or_load("user:6", lambda: {"id": 6}, tags=["user:6"])
    private_redis.start()
    assert recovered.wait(30)
    manager.close()  # the retry queue's worker has stopped: nothing changes from here on
    monitor.drain()
    engine = postgres.engine()
    outbox = outbox_table(MetaData())
    outbox.metadata.create_all(engine)
    left_behind = outbox_row(["user:1"], ["user"])
    left_behind["created_at"] = time.time() - 60
    with engine.begin() as connection:
        connection.execute(insert(outbox), [left_behind, outbox_row(["user:2"], ["user"])])
    bus = EventBus()
    bus.subscribe(EventTypes.USER_UPDATED, lambda event: None)

    @bus.subscribe(EventTypes.USER_UPDATED)
    def failing(event: Event) -> None:
        raise RuntimeError("a handler that fails")

    relay = OutboxRelay(engine, manager, outbox, grace=30, bus=bus)
    assert 1 == relay.run_once()
    bus.publish(Event(EventTypes.USER_UPDATED, {"old": {"id": 1}}))
    registry = CollectorRegistry()
    registry.register(FreshcacheCollector(manager=manager, relay=relay, bus=bus))

    text = generate_latest(registry).decode()
    manager_snapshot = manager.snapshot()
    snapshots = {
        "cache": manager_snapshot.pop("cache"),
        "manager": manager_snapshot,
        "relay": relay.last_stats,
        "events": bus.metrics.snapshot(),
        "monitor": monitor.snapshot(),
    }
    families = {family.name: family for family in text_string_to_metric_families(text)}

    assert {m.exposed for table in METRICS.values() for m in table} == set(families)
    for scope, table in METRICS.items():
        assert {m.key for m in table} == set(snapshots[scope]), scope
        for metric in table:
            in_prometheus = exposed_value(metric, families[metric.exposed].samples)
            in_snapshot = snapshot_value(metric, snapshots[scope][metric.key])
            if metric.kind == "histogram":
                assert in_snapshot[0] == in_prometheus[0], metric.key
                assert math.isclose(in_snapshot[1], in_prometheus[1]), metric.key
            else:
                assert in_snapshot == in_prometheus, f"{scope}.{metric.key}"
    seen = {**snapshots["cache"], **snapshots["manager"], **snapshots["relay"]}
    assert (1, 1, 1) == (seen["queue_overflows"], seen["relayed_rows"], seen["load_errors"])
    for key, at_least in (
        ("hits", 2),
        ("misses", 1),
        ("loads", 1),
        ("backend_errors", 1),
        ("failed_invalidations", 1),
        ("recovered_invalidations", 1),
    ):
        assert at_least <= seen[key], key
    assert {"user": 1} == seen["invalidations_by_entity_type"]
    events = snapshots["events"]
    assert (1, 3, 3) == (events["published"], events["delivered"], events["redeliveries"] + 1)
    assert {EventTypes.USER_UPDATED: 3} == events["handler_failures"]
    assert (1, 3) == (events["dead_lettered"], events["lag"]["count"])
    checks = snapshots["monitor"]
    assert (1, 0, 1) == (checks["checked"], checks["inconsistent"], checks["errors"])
    promtool = shutil.which("promtool")
    if promtool is None:
        if REQUIRE_SERVICES:
            pytest.fail("promtool is not installed, and FRESHCACHE_REQUIRE_SERVICES=1")
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert ("", 0) == (checked.stdout + checked.stderr, checked.returncode)
    monitor.close()
    cache.close()
    engine.dispose()


def test_the_table_names_each_metric_once() -> None:
    """No key repeats within what one snapshot reports, and no Prometheus name repeats at all."""
    for table in (CACHE_METRICS, MANAGER_METRICS, RELAY_METRICS, EVENT_METRICS, MONITOR_METRICS):
        keys = [metric.key for metric in table]
        assert sorted(set(keys)) == sorted(keys)
    names = [metric.exposed for table in METRICS.values() for metric in table]
    assert sorted(set(names)) == sorted(names)
    assert all(name.startswith("freshcache_") for name in names)
