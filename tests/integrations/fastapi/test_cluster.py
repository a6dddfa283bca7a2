"""Cluster totals: processes sharing Redis add their counters up in one hash."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from freshcache import AsyncCache

from .apps import AUTH, app_with

ROOT = Path(__file__).resolve().parents[3]


def _flat(report: dict[str, Any]) -> dict[str, int]:
    """The report's counters as ``group.key[.label]``, as each process counts them."""
    out = {}
    for group in ("cache", "manager", "relay", "events"):
        for key, value in (report.get(group) or {}).items():
            if isinstance(value, dict):
                out.update({f"{group}.{key}.{label}": n for label, n in value.items()})
            elif isinstance(value, int) and key != "hit_rate":
                out[f"{group}.{key}"] = value
    return out


@pytest.mark.slow
def test_cluster_totals_are_the_sum_of_every_process(redis_url: str, namespace: str) -> None:
    """After traffic in two processes at once, ?scope=cluster equals the sum of their own counters."""
    url = f"{redis_url}?namespace={namespace}"
    command = [sys.executable, "-m", "tests.integrations.fastapi.cluster_process", url]
    workers = [
        subprocess.Popen([*command, rounds], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        for rounds in ("200", "333")
    ]
    outputs = [worker.communicate(timeout=120)[0] for worker in workers]
    assert [0, 0] == [worker.returncode for worker in workers]
    expected: Counter[str] = Counter()
    for output in outputs:
        expected.update(json.loads(output))

    with TestClient(app_with(cache=AsyncCache.from_url(url))) as client:
        answer = client.get("/api/system/metrics/cache", params={"scope": "cluster"})

    assert 200 == answer.status_code, answer.text
    report = answer.json()
    assert {name: n for name, n in expected.items() if n} == {
        name: n for name, n in _flat(report).items() if n
    }
    assert expected["cache.hits"] > 0
    assert (
        expected["manager.invalidations_by_entity_type.user"]
        == report["invalidations_by_entity_type"]["user"]
    )
    hits, misses = expected["cache.hits"], expected["cache.misses"]
    assert hits / (hits + misses) == report["hit_rate"]
    assert 3 == report["processes"]  # the two workers and the reader


def test_a_local_reset_leaves_cluster_totals_whole(redis_url: str, namespace: str) -> None:
    """reset-metrics zeroes this process's counters; the cluster keeps what they had counted."""
    cache = AsyncCache.from_url(f"{redis_url}?namespace={namespace}")
    with TestClient(app_with(cache=cache)) as client:
        for _ in range(3):
            assert client.portal is not None
            client.portal.call(cache.get, "absent")
        client.post("/api/system/cache/reset-metrics", headers=AUTH)
        client.portal.call(cache.get, "absent")
        local = client.get("/api/system/metrics/cache").json()
        cluster = client.get("/api/system/metrics/cache", params={"scope": "cluster"}).json()

    assert 1 == local["cache"]["misses"]
    assert 4 == cluster["cache"]["misses"]
