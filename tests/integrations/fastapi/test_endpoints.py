"""The monitoring router's endpoints, on an async and on a sync cache and manager."""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from freshcache import (
    AsyncCache,
    AsyncInvalidationManager,
    Cache,
    ConfigurationError,
    InvalidationManager,
)
from freshcache.integrations.fastapi import MonitoringSettings

from ...settings import REQUIRE_SERVICES
from .apps import AUTH, TOKEN, app_with, rules


class Service:
    """A cache and a manager of one kind, with the router's client; sync helpers for the test."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        if kind == "async":
            self.cache: Any = AsyncCache.from_url("memory://")
            self.manager: Any = AsyncInvalidationManager(self.cache, rules())
        else:
            self.cache = Cache.from_url("memory://")
            self.manager = InvalidationManager(self.cache, rules())
        self.client = TestClient(app_with(cache=self.cache, manager=self.manager))

    def run(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        """Call a cache or manager method in the app's own event loop (or plainly, if sync)."""
        if self.kind == "sync":
            return method(*args, **kwargs)
        portal = self.client.portal
        assert portal is not None

        async def call() -> Any:
            return await method(*args, **kwargs)

        return portal.call(call)

    def fill(self, key: str, value: Any, tags: list[str]) -> None:
        """Store ``key`` through a load, so it carries the versions of ``tags``."""
        if self.kind == "sync":
            self.cache.get_or_load(key, lambda: value, tags=tags)
        else:

            async def load() -> Any:
                return value

            self.run(self.cache.get_or_load, key, load, tags=tags)


@pytest.fixture(params=["async", "sync"])
def service(request: pytest.FixtureRequest) -> Iterator[Service]:
    made = Service(request.param)
    with made.client:
        yield made


# Metrics


def test_metrics_report_every_table_metric_and_the_founding_fields(service: Service) -> None:
    """The JSON holds each table metric by group and the founding document's fields by name."""
    from freshcache._metrics import METRICS

    service.fill("user:1", {"id": 1}, ["user:1"])
    service.run(service.cache.get, "user:1")
    service.run(service.manager.invalidate_entity, "user", old={"id": 1})

    answer = service.client.get("/api/system/metrics/cache")

    assert 200 == answer.status_code
    report = answer.json()
    assert "process" == report["scope"]
    for group in ("cache", "manager"):
        assert [m.key for m in METRICS[group]] == list(report[group])
    assert {"user": 1} == report["invalidations_by_entity_type"]
    assert 0 == report["failed_invalidations"]
    assert ["user:1", "users"] == report["last_invalidation"]["tags"]
    assert 0.5 == report["hit_rate"]
    assert 1 == report["cache"]["hits"]
    assert {"cache_get_latency", "cache_load_latency", "manager_invalidate_latency"} <= set(
        report["latency"]
    )
    assert report["outbox_backlog"] is None  # no relay given


def test_metric_table_lists_help_for_every_metric(service: Service) -> None:
    """The table endpoint gives each metric's help text: what the dashboard labels with."""
    from freshcache._metrics import METRICS

    rows = service.client.get("/api/system/metrics/table").json()

    named = {(row["group"], row["key"]): row["help"] for row in rows}
    for group, table in METRICS.items():
        for metric in table:
            assert metric.help == named[(group, metric.key)]


def test_scope_cluster_is_404_without_redis(service: Service) -> None:
    """?scope=cluster on a memory backend answers 404 saying totals need Redis."""
    answer = service.client.get("/api/system/metrics/cache", params={"scope": "cluster"})

    assert 404 == answer.status_code
    assert "Redis" in answer.json()["detail"]


def test_unknown_scope_is_422(service: Service) -> None:
    """A scope other than process or cluster is refused with 422."""
    assert 422 == service.client.get("/api/system/metrics/cache?scope=galaxy").status_code


def test_prometheus_exposition_passes_promtool(service: Service) -> None:
    """GET /metrics is the Prometheus text format and promtool check metrics accepts it."""
    service.fill("user:1", 1, ["user:1"])

    answer = service.client.get("/metrics")

    assert 200 == answer.status_code
    assert answer.headers["content-type"].startswith("text/plain")
    assert "freshcache_cache_loads_total 1.0" in answer.text
    promtool = shutil.which("promtool")
    if promtool is None:
        if REQUIRE_SERVICES:
            pytest.fail("promtool is not installed, and FRESHCACHE_REQUIRE_SERVICES=1")
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    checked = subprocess.run(
        [promtool, "check", "metrics"],
        input=answer.text,
        capture_output=True,
        text=True,
        check=False,
    )
    assert 0 == checked.returncode, checked.stdout + checked.stderr


# Invalidation


def test_invalidate_entity_by_id_moves_its_tags_and_is_logged(service: Service) -> None:
    """An entity by id invalidates its rules' tags, is counted by type and shows in the log."""
    service.fill("user:5", {"id": 5}, ["user:5"])

    answer = service.client.post(
        "/api/system/cache/invalidate", json={"entity": {"type": "user", "id": 5}}, headers=AUTH
    )

    assert 200 == answer.status_code, answer.text
    body = answer.json()
    assert ["user:5", "users"] == body["tags"]
    assert ["user"] == body["entity_types"]
    assert body["applied"] is True
    assert body["duration_ms"] >= 0
    assert service.run(service.cache.get, "user:5") is None
    report = service.client.get("/api/system/metrics/cache").json()
    assert {"user": 1} == report["invalidations_by_entity_type"]
    recent = service.client.get("/api/system/cache/recent").json()
    assert "admin-api" == recent[0]["source"]
    assert ["user"] == recent[0]["entity_types"]


def test_invalidate_entity_by_old_and_new_values(service: Service) -> None:
    """An entity's old and new values invalidate the tags of both."""
    answer = service.client.post(
        "/api/system/cache/invalidate",
        json={"entity": {"type": "post", "old": {"id": 1}, "new": {"id": 2}}},
        headers=AUTH,
    )

    assert 200 == answer.status_code, answer.text
    assert {"post:1", "post:2"} == set(answer.json()["tags"])


def test_invalidate_keys_tags_and_confirmed_patterns(service: Service) -> None:
    """Keys, tags and a confirmed match-all pattern apply together; the key count is reported."""
    service.fill("a", 1, ["t"])
    service.fill("b", 2, [])

    answer = service.client.post(
        "/api/system/cache/invalidate",
        json={"keys": ["b"], "tags": ["t"], "patterns": ["*"], "confirm": True},
        headers=AUTH,
    )

    assert 200 == answer.status_code, answer.text
    body = answer.json()
    assert (["t"], ["b"], ["*"], 1) == (
        body["tags"],
        body["keys"],
        body["patterns"],
        body["key_count"],
    )
    assert {} == service.run(service.cache.get_many, ["a", "b"])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "select something to invalidate"),
        ({"patterns": ["*"]}, "confirm"),
        ({"patterns": ["**"]}, "confirm"),
        ({"keys": ["has space"]}, "key"),
        ({"tags": [""]}, "tag"),
        ({"entity": {"type": "user"}}, "needs an id"),
        ({"entity": {"type": "user", "id": 1, "new": {"id": 1}}}, "not both"),
        ({"entity": {"type": "ghost", "id": 1}}, "no rules for entity type 'ghost'"),
        ({"tags": ["t"], "surprise": 1}, "Extra inputs"),
    ],
)
def test_invalidate_refuses_bad_bodies_with_422(
    service: Service, body: dict[str, Any], message: str
) -> None:
    """A body selecting nothing, an unconfirmed match-all, a bad key or an unknown entity is 422."""
    answer = service.client.post("/api/system/cache/invalidate", json=body, headers=AUTH)

    assert 422 == answer.status_code
    assert message in str(answer.json()["detail"])
    assert 0 == service.manager.metrics.tag_invalidations


def test_reset_metrics_zeroes_counters(service: Service) -> None:
    """POST reset-metrics zeroes the cache's and manager's counters."""
    service.fill("k", 1, ["t"])
    service.run(service.manager.invalidate_tags, ["t"])

    answer = service.client.post("/api/system/cache/reset-metrics", headers=AUTH)

    assert 200 == answer.status_code
    assert ["cache", "manager"] == answer.json()["reset"]
    report = service.client.get("/api/system/metrics/cache").json()
    assert (0, 0) == (report["cache"]["loads"], report["manager"]["tag_invalidations"])


# Auth


ADMIN_CALLS = [
    ("post", "/api/system/cache/invalidate", {"tags": ["t"]}),
    ("post", "/api/system/cache/reset-metrics", None),
    ("get", "/api/system/cache/keys/k", None),
    ("get", "/api/system/cache/tags/t", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_CALLS)
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": f"Basic {TOKEN}"}],
)
def test_admin_calls_need_the_token(
    service: Service, method: str, path: str, body: Any, headers: dict[str, str]
) -> None:
    """A missing, wrong or non-bearer token is 401 with WWW-Authenticate, and nothing is done."""
    answer = service.client.request(method, path, json=body, headers=headers)

    assert 401 == answer.status_code
    assert "Bearer" == answer.headers["www-authenticate"]
    assert 0 == service.manager.metrics.tag_invalidations


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_CALLS)
def test_admin_calls_are_403_without_a_configured_token(
    method: str, path: str, body: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no token configured, admin calls answer 403 saying how to enable them."""
    monkeypatch.delenv("FRESHCACHE_ADMIN_TOKEN", raising=False)
    cache = AsyncCache.from_url("memory://")
    with TestClient(app_with(cache=cache, settings=MonitoringSettings())) as client:
        answer = client.request(method, path, json=body, headers=AUTH)

    assert 403 == answer.status_code
    assert "set FRESHCACHE_ADMIN_TOKEN" in answer.json()["detail"]


def test_token_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """FRESHCACHE_ADMIN_TOKEN enables the admin calls when no token is passed."""
    monkeypatch.setenv("FRESHCACHE_ADMIN_TOKEN", TOKEN)
    cache = AsyncCache.from_url("memory://")
    with TestClient(app_with(cache=cache, settings=MonitoringSettings())) as client:
        assert 200 == client.post("/api/system/cache/reset-metrics", headers=AUTH).status_code


def test_reads_need_the_token_when_protected() -> None:
    """With protect_reads, metrics, health and /metrics answer 401 without the token."""
    cache = AsyncCache.from_url("memory://")
    settings = MonitoringSettings(admin_token=TOKEN, protect_reads=True)
    with TestClient(app_with(cache=cache, settings=settings)) as client:
        for path in ("/api/system/metrics/cache", "/api/system/health", "/metrics"):
            assert 401 == client.get(path).status_code, path
            assert 200 == client.get(path, headers=AUTH).status_code, path


# Inspector


def test_inspector_explains_a_key_made_stale(service: Service) -> None:
    """After its tag is invalidated, a stored key is explained as a miss: stored against current."""
    service.fill("user:7:profile", {"id": 7}, ["user:7"])
    fresh = service.client.get("/api/system/cache/keys/user:7:profile", headers=AUTH).json()
    service.run(service.manager.invalidate_tags, ["user:7"])
    service.run(service.cache.get_or_load, "other", _loader(service, 1), tags=["user:7"])

    answer = service.client.get("/api/system/cache/keys/user:7:profile", headers=AUTH)

    assert fresh["would_hit"] is True
    assert 200 == answer.status_code
    stale = answer.json()
    assert (True, False) == (stale["found"], stale["would_hit"])
    [tag] = stale["tags"]
    assert fresh["tags"][0]["version"] == tag["stored_version"]
    assert tag["version"] != tag["stored_version"]
    assert "moved" in stale["reasons"][0]
    assert ["user:7"] == tag["recent_invalidations"][0]["tags"]
    assert stale["size_bytes"] > 0
    assert 0 < stale["ttl_seconds"]


def test_inspector_shows_pending_holders_of_a_tag(service: Service) -> None:
    """A tag held by a strict write shows pending with its holder; its key would miss."""
    service.fill("k", 1, ["user:9"])
    pending = service.run(service.manager.begin, ["user:9"])

    tag = service.client.get("/api/system/cache/tags/user:9", headers=AUTH).json()
    key = service.client.get("/api/system/cache/keys/k", headers=AUTH).json()

    assert tag["pending"] is True
    assert [pending.token] == [holder["token"] for holder in tag["holders"]]
    assert key["would_hit"] is False
    assert pending.token in key["reasons"][0]


def test_inspector_404_for_unknown_key_and_tag(service: Service) -> None:
    """A key never stored and a tag never seen answer 404, with the explanation as body."""
    key = service.client.get("/api/system/cache/keys/never", headers=AUTH)
    tag = service.client.get("/api/system/cache/tags/never", headers=AUTH)

    assert (404, 404) == (key.status_code, tag.status_code)
    assert key.json()["would_hit"] is False
    assert key.json()["reasons"][0].startswith("no entry")
    assert tag.json()["version"] is None


def test_inspector_422_for_an_invalid_key(service: Service) -> None:
    """A key the cache refuses (a glob) is 422 naming the problem."""
    answer = service.client.get("/api/system/cache/keys/user*", headers=AUTH)

    assert 422 == answer.status_code
    assert "user*" in str(answer.json()["detail"])


def test_inspector_is_503_while_the_breaker_is_open(service: Service) -> None:
    """The inspector goes through the guard: with the breaker open it answers 503, sending nothing."""
    breaker = service.cache.breaker
    breaker.first_cooldown = 60.0  # open for the whole test, however slow the machine
    breaker.failed()

    answer = service.client.get("/api/system/cache/keys/k", headers=AUTH)

    assert 503 == answer.status_code
    assert "circuit breaker open" in answer.json()["detail"]


# Construction


def test_router_refuses_wrong_kinds() -> None:
    """Anything but a freshcache cache, manager, relay or bus is refused at construction."""
    with pytest.raises(
        ConfigurationError, match="monitoring_router needs an AsyncCache or a Cache, not a dict"
    ):
        app_with(cache={})
    with pytest.raises(ConfigurationError, match="at least one of"):
        app_with()
    with pytest.raises(ConfigurationError, match="at least 16 characters"):
        MonitoringSettings(admin_token="short")


def test_sync_invalidations_do_not_block_the_event_loop() -> None:
    """A sync manager's invalidation runs in the thread pool, not on the app's event loop."""
    cache = Cache.from_url("memory://")
    manager = InvalidationManager(cache, rules())
    threads: list[threading.Thread] = []
    manager.subscribe(lambda invalidation: threads.append(threading.current_thread()))
    with TestClient(app_with(cache=cache, manager=manager)) as client:
        client.post("/api/system/cache/invalidate", json={"tags": ["t"]}, headers=AUTH)
        portal = client.portal
        assert portal is not None
        loop_thread = portal.call(lambda: threading.current_thread())

    assert 1 == len(threads)
    assert loop_thread is not threads[0]


def _loader(service: Service, value: Any) -> Any:
    if service.kind == "sync":
        return lambda: value

    async def load() -> Any:
        return value

    return load


def test_inspector_takes_keys_and_tags_with_slashes(service: Service) -> None:
    """A key or tag holding '/' (sent encoded or not) is inspected whole."""
    service.fill("report/2024/05", 1, ["tenant/7"])

    plain = service.client.get("/api/system/cache/keys/report/2024/05", headers=AUTH)
    encoded = service.client.get("/api/system/cache/keys/report%2F2024%2F05", headers=AUTH)
    tag = service.client.get("/api/system/cache/tags/tenant/7", headers=AUTH)

    assert (200, 200, 200) == (plain.status_code, encoded.status_code, tag.status_code)
    assert "report/2024/05" == plain.json()["key"] == encoded.json()["key"]
    assert plain.json()["would_hit"] is True
    assert "tenant/7" == tag.json()["tag"]


def test_a_body_that_is_not_json_is_400(service: Service) -> None:
    """Bytes that are not JSON answer 400 (documented in the OpenAPI), and nothing is invalidated."""
    answer = service.client.post(
        "/api/system/cache/invalidate",
        content=b"\xff",
        headers={**AUTH, "Content-Type": "application/json"},
    )
    documented = service.client.get("/openapi.json").json()

    assert 400 == answer.status_code
    assert "400" in documented["paths"]["/api/system/cache/invalidate"]["post"]["responses"]
    assert 0 == service.manager.metrics.tag_invalidations
