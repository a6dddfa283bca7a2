"""The consistency monitor in the monitoring API: its report, its metrics, and its absence."""

from __future__ import annotations

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from freshcache import Cache, ConsistencyMonitor, InvalidationManager
from freshcache._metrics import METRICS

from .apps import AUTH, app_with, rules


def checked_service() -> tuple[TestClient, Cache, ConsistencyMonitor]:
    """A sync cache whose monitor checked one clean and one planted invalidation."""
    cache = Cache.from_url("memory://")
    manager = InvalidationManager(cache, rules())
    monitor = ConsistencyMonitor(cache, rate=1.0, delay=3600)
    for user in (1, 2):
        cache.get_or_load(f"user:{user}", lambda u=user: {"id": u}, tags=[f"user:{user}"])
    old = cache.backend.tag_versions(["user:2"])["user:2"]
    manager.invalidate_tags(["user:1", "user:2"])
    cache.backend._versions["user:2"] = old  # type: ignore[attr-defined]  # restored behind its back
    monitor.drain()
    return TestClient(app_with(cache=cache, manager=manager)), cache, monitor


def test_the_report_gives_counts_nines_statement_and_examples() -> None:
    """GET /api/system/cache/consistency answers the checks, the inconsistency found, the bound and the example."""
    client, _, _ = checked_service()

    answer = client.get("/api/system/cache/consistency")

    assert 200 == answer.status_code
    body = answer.json()
    assert (2, 2, 1) == (body["sampled"], body["checked"], body["inconsistent"])
    assert 0.5 == body["consistency_ratio"]
    assert 0.95 == body["confidence"]
    assert body["consistency_nines"] < 0.3  # one in two: nowhere near a nine
    assert ["user:2"] == [example["tag"] for example in body["examples"]]
    assert "1 inconsistencies (rate 0.5) in 2 checks" in body["statement"]
    assert (1.0, 3600.0) == (body["rate"], body["delay_seconds"])


def test_without_a_monitor_the_report_is_404_saying_it_is_opt_in() -> None:
    """A cache with no monitor answers 404, naming how to turn one on."""
    client = TestClient(app_with(cache=Cache.from_url("memory://")))

    answer = client.get("/api/system/cache/consistency")

    assert 404 == answer.status_code
    assert "opt-in" in answer.json()["detail"]
    assert client.get("/api/system/metrics/cache").json()["monitor"] is None


def test_the_metrics_report_and_prometheus_carry_the_monitor_group() -> None:
    """The JSON metrics hold the monitor's table keys; /metrics exposes the same values."""
    client, _, monitor = checked_service()

    report = client.get("/api/system/metrics/cache").json()
    families = {
        family.name: family
        for family in text_string_to_metric_families(client.get("/metrics").text)
    }

    assert [m.key for m in METRICS["monitor"]] == list(report["monitor"])
    assert monitor.snapshot() == report["monitor"]
    assert 1.0 == families["freshcache_monitor_inconsistent"].samples[0].value
    nines = families["freshcache_monitor_consistency_nines"].samples[0].value
    assert report["monitor"]["consistency_nines"] == nines


def test_a_metrics_reset_zeroes_the_monitor() -> None:
    """POST reset-metrics zeroes the monitor's counts and names it among the groups reset."""
    client, _, monitor = checked_service()

    answer = client.post("/api/system/cache/reset-metrics", headers=AUTH)

    assert "monitor" in answer.json()["reset"]
    assert (0, 0, []) == (
        monitor.snapshot()["checked"],
        monitor.snapshot()["inconsistent"],
        monitor.report()["examples"],
    )


def test_cluster_totals_recompute_the_nines_from_the_summed_checks() -> None:
    """Summed over processes, the checks give the ratio and nines of the whole service, not of one process."""
    from freshcache.integrations.fastapi.router import _cluster_report

    report = _cluster_report({"monitor.checked": 100_000, "monitor.inconsistent": 0}, 2)

    assert 1.0 == report["monitor"]["consistency_ratio"]
    assert 4.52 == round(report["monitor"]["consistency_nines"], 2)
