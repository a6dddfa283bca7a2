"""``GET /api/system/cache/rules``: the manager's rules and relations as data, guarded like the other reads."""

from __future__ import annotations

from fastapi.testclient import TestClient

from freshcache import AsyncCache, AsyncInvalidationManager, Rules
from freshcache.integrations.fastapi import MonitoringSettings

from .apps import AUTH, TOKEN, app_with


def service_rules() -> Rules:
    rules = Rules()
    rules.entity("challenge", tags=["challenge:{id}", "user:{user_id}:challenges"])
    rules.entity("user", tags=["user:{id}"])
    rules.entity("user", tags=["leaderboard"], fields=["score", "name"])
    rules.relation("evaluation", parent="challenge", keys={"id": "challenge_id"})
    return rules


def test_the_rules_are_answered_as_the_manager_holds_them() -> None:
    """Every rule with its tags and fields (None for any change) and every relation with its keys, in the rules' order."""
    cache = AsyncCache.from_url("memory://")
    rules = service_rules()
    with TestClient(
        app_with(cache=cache, manager=AsyncInvalidationManager(cache, rules))
    ) as client:
        answer = client.get("/api/system/cache/rules")
    assert 200 == answer.status_code, answer.text
    assert rules.describe() == answer.json()
    body = answer.json()
    assert {"entity_type": "user", "fields": ["name", "score"], "tags": ["leaderboard"]} in body[
        "rules"
    ]
    assert {"entity_type": "user", "fields": None, "tags": ["user:{id}"]} in body["rules"]
    assert [
        {
            "entity_type": "evaluation",
            "fields": None,
            "parent": "challenge",
            "keys": {"id": "challenge_id"},
        }
    ] == body["relations"]


def test_without_a_manager_the_rules_are_a_404_saying_so() -> None:
    """A router given no manager has no rules to show: a 404 naming the manager."""
    with TestClient(app_with(cache=AsyncCache.from_url("memory://"))) as client:
        answer = client.get("/api/system/cache/rules")
    assert 404 == answer.status_code
    assert "manager" in answer.json()["detail"]


def test_the_rules_need_the_token_when_reads_are_protected() -> None:
    """With protect_reads, the rules answer 401 without the token and 200 with it."""
    cache = AsyncCache.from_url("memory://")
    manager = AsyncInvalidationManager(cache, service_rules())
    settings = MonitoringSettings(admin_token=TOKEN, protect_reads=True)
    with TestClient(app_with(cache=cache, manager=manager, settings=settings)) as client:
        assert 401 == client.get("/api/system/cache/rules").status_code
        assert 200 == client.get("/api/system/cache/rules", headers=AUTH).status_code
