"""The reference service end to end over HTTP: on a SQLite file and the memory cache, and on PostgreSQL and Redis."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pydantic_settings")
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from freshcache import ConfigurationError
from freshcache.app import Settings, create_app

from ..databases import Database


@pytest.fixture(params=["sqlite-memory", "postgresql-redis"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    """The service on the embedded defaults, and on the real PostgreSQL (a schema of the test's own) and Redis."""
    settings = Settings(data_dir=tmp_path, seed=False)
    if request.param == "postgresql-redis":
        database: Database = request.getfixturevalue("postgres")
        redis_url: str = request.getfixturevalue("redis_url")
        namespace: str = request.getfixturevalue("namespace")
        settings = Settings(
            data_dir=tmp_path,
            seed=False,
            database_url=f"{database.async_url}?options=-csearch_path%3D{database.schema}",
            cache_url=f"{redis_url}?namespace={namespace}",
        )
    with TestClient(create_app(settings)) as client:
        yield client


def rows(client: TestClient) -> dict[str, list[Any]]:
    """Every row of the service's tables, read past the service and its cache."""
    url = client.app.state.service.settings.database_url  # type: ignore[attr-defined]
    engine = create_engine(url.replace("+aiosqlite", ""))
    try:
        with engine.connect() as connection:
            return {
                table: list(connection.execute(text(f"select * from {table} order by id")))
                for table in ("users", "challenges", "evaluations")
            }
    finally:
        engine.dispose()


def cache_counts(client: TestClient) -> dict[str, int]:
    cache = client.get("/api/system/metrics/cache").json()["cache"]
    return {"hits": cache["hits"], "loads": cache["loads"]}


def read_twice(client: TestClient, path: str) -> Any:
    """GET ``path`` twice: the second is answered by the cache (a hit, no load)."""
    first = client.get(path)
    assert 200 == first.status_code, first.text
    before = cache_counts(client)
    second = client.get(path)
    after = cache_counts(client)
    assert first.json() == second.json()
    assert after["hits"] > before["hits"]
    assert after["loads"] == before["loads"]
    return second.json()


def user(client: TestClient, email: str = "ada@example.com", name: str = "Ada") -> dict[str, Any]:
    response = client.post("/api/users", json={"email": email, "name": name})
    assert 201 == response.status_code, response.text
    return response.json()  # type: ignore[no-any-return]


def challenge(client: TestClient, user_id: int, title: str = "Sort") -> dict[str, Any]:
    response = client.post("/api/challenges", json={"user_id": user_id, "title": title})
    assert 201 == response.status_code, response.text
    return response.json()  # type: ignore[no-any-return]


def evaluate(client: TestClient, challenge_id: int, score: int) -> dict[str, Any]:
    response = client.post(f"/api/challenges/{challenge_id}/evaluations", json={"score": score})
    assert 201 == response.status_code, response.text
    return response.json()  # type: ignore[no-any-return]


def test_user_crud_reads_cached_and_fresh_after_each_write(client: TestClient) -> None:
    """A user is created, read from the cache, updated and deleted, each read after a write fresh."""
    ada = user(client)
    path = f"/api/users/{ada['id']}"
    assert "Ada" == read_twice(client, path)["name"]
    patched = client.patch(path, json={"name": "Ada L.", "focus_area": "math"})
    assert 200 == patched.status_code
    assert {"name": "Ada L.", "focus_area": "math"} == {
        key: read_twice(client, path)[key] for key in ("name", "focus_area")
    }
    assert 204 == client.delete(path).status_code
    assert 404 == client.get(path).status_code
    assert 404 == client.delete(path).status_code


def test_challenge_crud_and_the_users_list(client: TestClient) -> None:
    """A challenge is created, read cached, updated and deleted; its user's list follows each write."""
    ada = user(client)
    created = challenge(client, ada["id"])
    path = f"/api/challenges/{created['id']}"
    assert "Sort" == read_twice(client, path)["title"]
    listing = f"/api/users/{ada['id']}/challenges"
    assert [created["id"]] == [c["id"] for c in read_twice(client, listing)]
    assert 200 == client.patch(path, json={"title": "Sort fast", "status": "done"}).status_code
    assert "Sort fast" == read_twice(client, path)["title"]
    assert ["Sort fast"] == [c["title"] for c in read_twice(client, listing)]
    assert 204 == client.delete(path).status_code
    assert 404 == client.get(path).status_code
    assert [] == read_twice(client, listing)


def test_user_challenges_paginate(client: TestClient) -> None:
    """The list of a user's challenges pages with limit and offset, each page cached."""
    ada = user(client)
    ids = [challenge(client, ada["id"], f"C{n}")["id"] for n in range(5)]
    listing = f"/api/users/{ada['id']}/challenges"
    assert ids[:2] == [c["id"] for c in read_twice(client, f"{listing}?limit=2")]
    assert ids[2:4] == [c["id"] for c in read_twice(client, f"{listing}?limit=2&offset=2")]
    assert ids[4:] == [c["id"] for c in read_twice(client, f"{listing}?limit=2&offset=4")]


def test_challenge_moved_between_users_drops_both_lists(client: TestClient) -> None:
    """Moving a challenge from one user to another makes both users' cached lists fresh."""
    ada, bob = user(client), user(client, "bob@example.com", "Bob")
    moved = challenge(client, ada["id"])
    ada_list, bob_list = f"/api/users/{ada['id']}/challenges", f"/api/users/{bob['id']}/challenges"
    assert [moved["id"]] == [c["id"] for c in read_twice(client, ada_list)]
    assert [] == read_twice(client, bob_list)
    response = client.patch(f"/api/challenges/{moved['id']}", json={"user_id": bob["id"]})
    assert 200 == response.status_code
    assert [] == read_twice(client, ada_list)
    assert [moved["id"]] == [c["id"] for c in read_twice(client, bob_list)]


def test_evaluation_changes_progress_and_leaderboard(client: TestClient) -> None:
    """An evaluation posted shows at once in its challenge's list, its user's progress and the leaderboard."""
    ada = user(client)
    task = challenge(client, ada["id"])
    progress, evaluations = (
        f"/api/users/{ada['id']}/progress",
        f"/api/challenges/{task['id']}/evaluations",
    )
    assert 0 == read_twice(client, progress)["evaluations"]
    assert [] == read_twice(client, "/api/leaderboard")
    assert [] == read_twice(client, evaluations)
    first = evaluate(client, task["id"], 80)
    assert {"evaluations": 1, "average_score": 80.0, "best_score": 80} == {
        key: read_twice(client, progress)[key]
        for key in ("evaluations", "average_score", "best_score")
    }
    assert [(ada["id"], "Ada", 80.0)] == [
        (row["user_id"], row["name"], row["average_score"])
        for row in read_twice(client, "/api/leaderboard")
    ]
    assert [first["id"]] == [e["id"] for e in read_twice(client, evaluations)]
    evaluate(client, task["id"], 60)
    assert 70.0 == read_twice(client, progress)["average_score"]
    assert 70.0 == read_twice(client, "/api/leaderboard")[0]["average_score"]


def test_leaderboard_ignores_last_seen_but_not_a_name(client: TestClient) -> None:
    """A user's last_seen_at change leaves the leaderboard cached; a name change refreshes it."""
    ada = user(client)
    evaluate(client, challenge(client, ada["id"])["id"], 90)
    read_twice(client, "/api/leaderboard")
    path = f"/api/users/{ada['id']}"
    assert 200 == client.patch(path, json={"last_seen_at": "2026-01-02T03:04:05"}).status_code
    assert "2026-01-02T03:04:05" == read_twice(client, path)["last_seen_at"]
    before = cache_counts(client)
    assert "Ada" == client.get("/api/leaderboard").json()[0]["name"]
    assert before["loads"] == cache_counts(client)["loads"]  # still cached
    assert 200 == client.patch(path, json={"name": "Ada L."}).status_code
    before = cache_counts(client)
    assert "Ada L." == client.get("/api/leaderboard").json()[0]["name"]
    assert before["loads"] + 1 == cache_counts(client)["loads"]


def test_duplicate_email_is_a_conflict(client: TestClient) -> None:
    """A second user with a taken email, created or patched, answers 409 and changes nothing."""
    user(client)
    bob = user(client, "bob@example.com", "Bob")
    before = rows(client)
    created = client.post("/api/users", json={"email": "ada@example.com", "name": "Other"})
    assert 409 == created.status_code
    assert "email" in created.json()["detail"]
    patched = client.patch(f"/api/users/{bob['id']}", json={"email": "ada@example.com"})
    assert 409 == patched.status_code
    assert before == rows(client)
    assert "bob@example.com" == client.get(f"/api/users/{bob['id']}").json()["email"]


BAD_REQUESTS = [
    # (method, path, body, status, what the message names)
    ("post", "/api/users", {"email": "not-an-email", "name": "X"}, 422, "email"),
    ("post", "/api/users", {"email": "x@example.com"}, 422, "name"),
    ("post", "/api/users", {"email": "x@example.com", "name": "X", "admin": True}, 422, "admin"),
    ("post", "/api/users", {"email": "x@example.com", "name": "X" * 101}, 422, "name"),
    ("post", "/api/users", {"email": "x@example.com", "name": ["X"]}, 422, "name"),
    ("get", "/api/users/abc", None, 422, "user_id"),
    ("get", "/api/users/0", None, 422, "user_id"),
    ("get", "/api/users/99999999999999", None, 422, "user_id"),
    ("get", "/api/users/999", None, 404, "999"),
    ("patch", "/api/users/1", {"name": None}, 422, "name"),
    ("patch", "/api/users/1", {"last_seen_at": "yesterday"}, 422, "last_seen_at"),
    ("patch", "/api/users/1", {"id": 5}, 422, "id"),
    ("patch", "/api/users/999", {"name": "X"}, 404, "999"),
    ("delete", "/api/users/999", None, 404, "999"),
    ("get", "/api/users/999/challenges", None, 404, "999"),
    ("get", "/api/users/1/challenges?limit=0", None, 422, "limit"),
    ("get", "/api/users/1/challenges?offset=-1", None, 422, "offset"),
    ("get", "/api/users/999/progress", None, 404, "999"),
    ("post", "/api/challenges", {"user_id": 999, "title": "T"}, 404, "user_id"),
    ("post", "/api/challenges", {"user_id": 1, "title": ""}, 422, "title"),
    (
        "post",
        "/api/challenges",
        {"user_id": 1, "title": "T", "difficulty": "epic"},
        422,
        "difficulty",
    ),
    (
        "post",
        "/api/challenges",
        {"user_id": 1, "title": "T", "content": "x" * 10_001},
        422,
        "content",
    ),
    ("get", "/api/challenges/999", None, 404, "999"),
    ("patch", "/api/challenges/1", {"user_id": 999}, 404, "user_id"),
    ("patch", "/api/challenges/1", {"status": "lost"}, 422, "status"),
    ("patch", "/api/challenges/999", {"title": "T"}, 404, "999"),
    ("delete", "/api/challenges/999", None, 404, "999"),
    ("post", "/api/challenges/1/evaluations", {"score": 101}, 422, "score"),
    ("post", "/api/challenges/1/evaluations", {"score": -1}, 422, "score"),
    ("post", "/api/challenges/1/evaluations", {"score": "high"}, 422, "score"),
    ("post", "/api/challenges/1/evaluations", {"score": 50, "grade": "A"}, 422, "grade"),
    ("post", "/api/challenges/1/evaluations", {"score": 50, "user_id": 999}, 404, "user_id"),
    ("post", "/api/challenges/999/evaluations", {"score": 50}, 404, "999"),
    ("get", "/api/challenges/999/evaluations", None, 404, "999"),
    ("get", "/api/leaderboard?limit=1000", None, 422, "limit"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "named"), BAD_REQUESTS)
def test_bad_input_is_refused_naming_what_is_wrong(
    client: TestClient, method: str, path: str, body: Any, status: int, named: str
) -> None:
    """Bad input on every route answers a 4xx whose message names the field or id, and writes nothing."""
    ada = user(client)
    evaluate(client, challenge(client, ada["id"])["id"], 50)
    before = rows(client)
    options = {} if body is None else {"json": body}
    response = client.request(method.upper(), path, **options)
    assert status == response.status_code, response.text
    assert named in response.text
    assert before == rows(client)


def test_a_body_that_is_not_json_is_refused(client: TestClient) -> None:
    """A body that is not JSON answers 422 and writes nothing."""
    before = rows(client)
    response = client.post(
        "/api/users", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert 422 == response.status_code
    assert before == rows(client)


def test_first_start_seeds_an_empty_database(tmp_path: Path) -> None:
    """With seed on, an empty database gets users with challenges and evaluations, once."""
    with TestClient(create_app(Settings(data_dir=tmp_path))) as client:
        seeded = rows(client)
        assert all(seeded[table] for table in ("users", "challenges", "evaluations"))
        assert client.get("/api/leaderboard").json()
    with TestClient(create_app(Settings(data_dir=tmp_path))) as client:
        assert seeded == rows(client)


def test_deleting_a_user_drops_their_cached_challenges_and_standing(client: TestClient) -> None:
    """A user deleted takes their challenges (a database cascade) out of every cached read."""
    ada, bob = user(client), user(client, "bob@example.com", "Bob")
    task = challenge(client, ada["id"])
    evaluate(client, task["id"], 70)
    evaluate(client, challenge(client, bob["id"])["id"], 60)
    read_twice(client, f"/api/challenges/{task['id']}")
    read_twice(client, f"/api/challenges/{task['id']}/evaluations")
    assert 2 == len(read_twice(client, "/api/leaderboard"))
    assert 204 == client.delete(f"/api/users/{ada['id']}").status_code
    assert 404 == client.get(f"/api/challenges/{task['id']}").status_code
    assert 404 == client.get(f"/api/challenges/{task['id']}/evaluations").status_code
    assert [bob["id"]] == [row["user_id"] for row in read_twice(client, "/api/leaderboard")]


def test_caching_off_reads_the_database_every_time(tmp_path: Path) -> None:
    """With cache_url none (the null backend) no read is a hit, each one loads, and health and metrics answer as ever."""
    with TestClient(
        create_app(Settings(data_dir=tmp_path, seed=False, cache_url="none"))
    ) as client:
        assert "none" == client.app.state.service.cache.backend.name  # type: ignore[attr-defined]
        ada = user(client)
        path = f"/api/users/{ada['id']}"
        before = cache_counts(client)
        for read in (path, path, f"{path}/progress", f"{path}/progress", "/api/leaderboard"):
            assert 200 == client.get(read).status_code
        # A progress read loads the user, then the aggregate: 2 + 2 * 2 + 1 loads.
        assert {"hits": 0, "loads": before["loads"] + 7} == cache_counts(client)
        assert 200 == client.patch(path, json={"name": "Ada L."}).status_code
        assert "Ada L." == client.get(path).json()["name"]
        health = client.get("/api/system/health")
        assert (200, "up") == (health.status_code, health.json()["components"]["cache"]["status"])


def test_events_through_redis_streams_invalidate_too(
    tmp_path: Path, redis_url: str, namespace: str
) -> None:
    """With events on Redis, the writes' domain events go through the streams and their handlers run."""
    settings = Settings(
        data_dir=tmp_path,
        seed=False,
        cache_url=f"{redis_url}?namespace={namespace}",
        events="redis",
    )
    with TestClient(create_app(settings)) as client:
        ada = user(client)
        path = f"/api/users/{ada['id']}"
        read_twice(client, path)
        assert 200 == client.patch(path, json={"name": "Ada L."}).status_code
        assert "Ada L." == read_twice(client, path)["name"]
        events = client.get("/api/system/metrics/cache").json()["events"]
        assert "redis" in events["transport"]
        assert events["published"] >= 2


def test_events_on_redis_need_a_redis_cache(tmp_path: Path) -> None:
    """FRESHCACHE_EVENTS=redis over the memory cache is refused, saying what to set."""
    with pytest.raises(ConfigurationError, match="FRESHCACHE_CACHE_URL"):
        create_app(Settings(data_dir=tmp_path, events="redis"))


def test_strict_wait_reaches_the_manager_and_is_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FRESHCACHE_STRICT_WAIT sets the manager's strict_wait; a negative one is refused, naming it."""
    from pydantic import ValidationError

    monkeypatch.setenv("FRESHCACHE_STRICT_WAIT", "0.5")
    app = create_app(Settings(data_dir=tmp_path, seed=False))
    assert 0.5 == app.state.service.manager.strict_wait

    monkeypatch.delenv("FRESHCACHE_STRICT_WAIT")
    default = create_app(Settings(data_dir=tmp_path / "default", seed=False))
    assert 5.0 == default.state.service.manager.strict_wait

    monkeypatch.setenv("FRESHCACHE_STRICT_WAIT", "-1")
    with pytest.raises(ValidationError, match="strict_wait"):
        Settings(data_dir=tmp_path, seed=False)
