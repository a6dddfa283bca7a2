"""Lists page by cursor (keyset on id) as well as by offset, each page cached and fresh after a write."""

from __future__ import annotations

import base64
from typing import Any

import pytest

pytest.importorskip("pydantic_settings")
from fastapi.testclient import TestClient

from .test_reference_service import challenge, client, evaluate, read_twice, user

__all__ = ["client"]  # the fixture, on SQLite with memory and on PostgreSQL with Redis


def walk(client: TestClient, path: str, limit: int) -> list[list[int]]:
    """Every page of ``path`` by following X-Next-Cursor, each page read twice (the second a hit)."""
    pages: list[list[int]] = []
    url = f"{path}?limit={limit}"
    while True:
        ids = [row["id"] for row in read_twice(client, url)]
        pages.append(ids)
        following = client.get(url).headers.get("X-Next-Cursor")
        if following is None:
            return pages
        url = f"{path}?limit={limit}&cursor={following}"


def test_a_users_challenges_page_by_cursor(client: TestClient) -> None:
    """Following X-Next-Cursor walks a user's challenges in id order, each page cached, the last with no cursor."""
    ada = user(client)
    ids = [challenge(client, ada["id"], f"C{n}")["id"] for n in range(5)]
    assert [ids[0:2], ids[2:4], ids[4:]] == walk(client, f"/api/users/{ada['id']}/challenges", 2)
    first = client.get(f"/api/users/{ada['id']}/challenges?limit=2&offset=1")
    assert 'rel="next"' in first.headers["Link"]
    assert "offset" not in first.headers["Link"]
    assert ids[3:5] == [
        row["id"] for row in client.get(first.headers["Link"][1:].split(">")[0]).json()
    ]


def test_a_new_challenge_shows_on_a_cached_cursor_page(client: TestClient) -> None:
    """A challenge added, moved in or deleted after a cursor page was cached shows on that page at once."""
    ada, bob = user(client), user(client, "bob@example.com", "Bob")
    ids = [challenge(client, ada["id"], f"C{n}")["id"] for n in range(3)]
    path = f"/api/users/{ada['id']}/challenges"
    cursor = client.get(f"{path}?limit=2").headers["X-Next-Cursor"]
    second = f"{path}?limit=2&cursor={cursor}"
    assert [ids[2]] == [row["id"] for row in read_twice(client, second)]
    added = challenge(client, ada["id"], "New")["id"]
    assert [ids[2], added] == [row["id"] for row in read_twice(client, second)]
    moved = challenge(client, bob["id"], "Moved")["id"]
    assert 200 == client.patch(f"/api/challenges/{moved}", json={"user_id": ada["id"]}).status_code
    assert [ids[2], added] == [row["id"] for row in read_twice(client, second)]
    assert "X-Next-Cursor" in client.get(second).headers  # a third page now holds the moved one
    assert 204 == client.delete(f"/api/challenges/{ids[2]}").status_code
    assert [added, moved] == [row["id"] for row in read_twice(client, second)]


def test_a_challenges_evaluations_page_by_cursor(client: TestClient) -> None:
    """A challenge's evaluations page by cursor too, and a new evaluation shows on the cached last page."""
    ada = user(client)
    task = challenge(client, ada["id"])["id"]
    ids = [evaluate(client, task, score)["id"] for score in (10, 20, 30)]
    path = f"/api/challenges/{task}/evaluations"
    assert [ids[0:2], ids[2:]] == walk(client, path, 2)
    newest = evaluate(client, task, 40)["id"]
    assert [ids[0:2], [ids[2], newest]] == walk(client, path, 2)


def cursor_of(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


BAD_CURSORS = [
    # (query, what the message names)
    ("cursor=not-a-cursor", "cursor"),
    ("cursor=%%%", "cursor"),
    (f"cursor={cursor_of('after:x')}", "cursor"),
    (f"cursor={cursor_of('after:0')}", "cursor"),
    (f"cursor={cursor_of('after:99999999999')}", "cursor"),
    (f"cursor={cursor_of('before:3')}", "cursor"),
    ("cursor=" + "A" * 65, "cursor"),
    (f"cursor={cursor_of('after:1')}&offset=2", "offset"),
]


@pytest.mark.parametrize(
    "listing", ["users/{user}/challenges", "challenges/{challenge}/evaluations"]
)
def test_a_bad_cursor_is_a_422_naming_the_field(client: TestClient, listing: str) -> None:
    """A cursor this service did not give, or one combined with offset, answers 422 naming the field."""
    ada = user(client)
    task = challenge(client, ada["id"])["id"]
    path = "/api/" + listing.format(user=ada["id"], challenge=task)
    for query, named in BAD_CURSORS:
        response = client.get(f"{path}?{query}")
        assert 422 == response.status_code, (query, response.text)
        detail: Any = response.json()["detail"]
        assert named in str(detail), query
