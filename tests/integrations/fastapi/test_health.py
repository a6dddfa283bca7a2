"""Health: each component up or down with a reason; 503 when the service cannot serve."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import MetaData, insert

from freshcache import AsyncCache, AsyncEventBus, Cache, InvalidationManager
from freshcache.integrations.fastapi import MonitoringSettings
from freshcache.integrations.sqlalchemy import OutboxRelay, outbox_table
from freshcache.integrations.sqlalchemy._outbox import outbox_row

from ...databases import Database
from ...redis_server import RedisServer
from ..support import create_tables
from .apps import TOKEN, app_with

OUTBOX = outbox_table(MetaData())


@pytest.fixture
def relay(private_redis: RedisServer, postgres: Database) -> Iterator[OutboxRelay]:
    """A sync relay on PostgreSQL whose manager's cache is on the private redis-server."""
    engine = postgres.engine()
    create_tables(engine, OUTBOX.metadata)
    cache = Cache.from_url(f"{private_redis.url}?namespace=health")
    relay = OutboxRelay(engine, InvalidationManager(cache), OUTBOX, grace=3600)
    yield relay
    relay.close()
    cache.close()
    engine.dispose()


def test_health_is_up_then_503_with_redis_stopped(
    relay: OutboxRelay, private_redis: RedisServer
) -> None:
    """Every component is up; with the cache's redis-server killed, cache is down and the answer 503."""
    app = app_with(manager=relay.manager, relay=relay)
    with TestClient(app) as client:
        up = client.get("/api/system/health")
        private_redis.stop()
        down = client.get("/api/system/health")

    assert 200 == up.status_code
    assert {"database": "up", "cache": "up", "outbox": "up", "events": "not configured"} == {
        name: part["status"] for name, part in up.json()["components"].items()
    }
    assert 503 == down.status_code
    body = down.json()
    assert "down" == body["status"]
    assert "down" == body["components"]["cache"]["status"]
    assert "redis" in body["components"]["cache"]["reason"].lower()
    assert "up" == body["components"]["database"]["status"]


def test_health_answers_within_its_deadline_with_redis_paused(private_redis: RedisServer) -> None:
    """A paused (SIGSTOP) redis-server makes the cache down within health_timeout, not a hung request."""
    cache = AsyncCache.from_url(f"{private_redis.url}?namespace=paused&socket_timeout=30")
    settings = MonitoringSettings(admin_token=TOKEN, health_timeout=0.5)
    assert private_redis.process is not None
    with TestClient(app_with(cache=cache, settings=settings)) as client:
        private_redis.process.send_signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            answer = client.get("/api/system/health")
            elapsed = time.monotonic() - started
        finally:
            private_redis.process.send_signal(signal.SIGCONT)

    assert 503 == answer.status_code
    assert "no answer within 0.5 s" == answer.json()["components"]["cache"]["reason"]
    assert elapsed < 5


def test_a_failing_database_check_is_503_and_a_down_optional_part_is_degraded() -> None:
    """A required component down is 503; an optional one down (events) is 200, degraded."""

    def database_down() -> None:
        raise ConnectionError("connection refused by 127.0.0.1:1")

    cache = AsyncCache.from_url("memory://")
    down = MonitoringSettings(admin_token=TOKEN, database_check=database_down)
    optional = MonitoringSettings(
        admin_token=TOKEN, database_check=database_down, required_for_health=("cache",)
    )
    with TestClient(app_with(cache=cache, bus=AsyncEventBus(), settings=down)) as client:
        required_answer = client.get("/api/system/health")
    with TestClient(app_with(cache=cache, settings=optional)) as client:
        optional_answer = client.get("/api/system/health")

    assert 503 == required_answer.status_code
    database = required_answer.json()["components"]["database"]
    assert "ConnectionError: connection refused by 127.0.0.1:1" == database["reason"]
    assert "up" == required_answer.json()["components"]["events"]["status"]
    assert 200 == optional_answer.status_code
    assert "degraded" == optional_answer.json()["status"]


def test_outbox_backlog_shows_in_metrics(relay: OutboxRelay) -> None:
    """Rows waiting in the outbox show as outbox_backlog once the relay has passed."""
    with relay.engine.begin() as connection:
        connection.execute(insert(OUTBOX), [{**outbox_row([], [], "test"), "tags": '["t"]'}])
    relay.run_once()

    with TestClient(app_with(manager=relay.manager, relay=relay)) as client:
        report = client.get("/api/system/metrics/cache").json()

    assert 1 == report["outbox_backlog"]
    assert 1 == report["relay"]["outbox_pending"]
