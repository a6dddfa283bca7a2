"""The Prometheus exposition of every cache and manager metric."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import MetaData, create_engine, insert

from freshcache import Cache, InvalidationManager, Rules
from freshcache._metrics import CacheMetrics, ManagerMetrics
from freshcache.integrations.prometheus import FreshcacheCollector
from freshcache.integrations.sqlalchemy import OutboxRelay, outbox_table
from freshcache.integrations.sqlalchemy._outbox import outbox_row

from .conftest import REQUIRE_SERVICES


def exposition() -> str:
    cache = Cache.from_url("memory://")
    rules = Rules().entity("user", tags=["user:{id}"]).entity("challenge", tags=["challenge:{id}"])
    manager = InvalidationManager(cache, rules)
    for _ in range(3):
        cache.get_or_load("user:1", lambda: {"id": 1}, tags=["user:1"])
    manager.invalidate_entity("user", new={"id": 1})
    manager.invalidate_entity("user", new={"id": 2})
    manager.invalidate_entity("challenge", old={"id": 3})
    registry = CollectorRegistry()
    registry.register(FreshcacheCollector(manager=manager, labels={"cache": "main"}))
    manager.close()
    return generate_latest(registry).decode()


def test_exposition_parses_and_carries_the_values() -> None:
    """prometheus-client's own parser reads every metric back with the right values and labels."""
    families = {family.name: family for family in text_string_to_metric_families(exposition())}

    for name in CacheMetrics.COUNTERS:
        assert f"freshcache_cache_{name}" in families
    for name in ManagerMetrics.COUNTERS:
        assert f"freshcache_manager_{name}" in families
    hits = families["freshcache_cache_hits"].samples[0]
    assert ("freshcache_cache_hits_total", {"cache": "main"}, 2.0) == (
        hits.name,
        hits.labels,
        hits.value,
    )
    by_type = {
        sample.labels["entity_type"]: sample.value
        for sample in families["freshcache_manager_invalidations_by_entity_type"].samples
        if sample.name.endswith("_total")
    }
    assert {"challenge": 1.0, "user": 2.0} == by_type
    load = families["freshcache_cache_load_latency_seconds"]
    count = next(s for s in load.samples if s.name.endswith("_count"))
    inf = next(s for s in load.samples if s.labels.get("le") == "+Inf")
    assert (1.0, 1.0) == (count.value, inf.value)
    assert (
        families["freshcache_manager_last_invalidation_timestamp_seconds"].samples[0].value > 1.7e9
    )


def test_promtool_accepts_the_exposition() -> None:
    """promtool check metrics finds nothing to complain about."""
    promtool = shutil.which("promtool")
    if promtool is None:
        if REQUIRE_SERVICES:
            pytest.fail(
                "promtool is not installed (Debian's prometheus package), and FRESHCACHE_REQUIRE_SERVICES=1"
            )
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    text = exposition()

    checked = subprocess.run(
        [promtool, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert ("", 0) == (checked.stdout + checked.stderr, checked.returncode)


def test_relay_metrics_are_exposed(tmp_path: Path) -> None:
    """outbox_pending and the relay's lag appear once the relay has run, and promtool accepts them."""
    engine = create_engine(f"sqlite:///{tmp_path / 'outbox.db'}")
    outbox = outbox_table(MetaData())
    outbox.metadata.create_all(engine)
    waiting = outbox_row(["user:1"], ["user"])
    waiting["created_at"] -= 30
    with engine.begin() as connection:
        connection.execute(insert(outbox), [waiting, outbox_row(["user:2"], ["user"])])
    manager = InvalidationManager(Cache.from_url("memory://"))
    relay = OutboxRelay(engine, manager, outbox, grace=60.0, interval=0.05)
    relay.start()
    deadline = time.monotonic() + 5
    while not relay.last_stats and time.monotonic() < deadline:
        time.sleep(0.02)
    relay.close()
    registry = CollectorRegistry()
    registry.register(FreshcacheCollector(manager=manager, relay=relay))
    text = generate_latest(registry).decode()

    samples = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert 2.0 == samples["freshcache_outbox_pending"]
    assert 29.0 < samples["freshcache_outbox_relay_lag_seconds"] < 60.0
    assert 0.0 == samples["freshcache_outbox_relayed_rows_total"]
    promtool = shutil.which("promtool")
    if promtool is not None:
        checked = subprocess.run(
            [promtool, "check", "metrics"],
            input=text,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert ("", 0) == (checked.stdout + checked.stderr, checked.returncode)
    manager.close()
    engine.dispose()
