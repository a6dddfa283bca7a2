"""Request bodies over the service's limit: 413 with a message, and nothing written."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("pydantic_settings")
from fastapi.testclient import TestClient

from freshcache.app import Settings, create_app
from freshcache.app.limits import MAX_BODY_BYTES

from .test_reference_service import rows


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(data_dir=tmp_path, seed=False))) as client:
        yield client


def huge_user() -> bytes:
    return json.dumps({"email": "big@example.com", "name": "x" * (2 * MAX_BODY_BYTES)}).encode()


def test_a_declared_huge_body_is_refused_with_413(client: TestClient) -> None:
    """A body whose Content-Length is over the limit answers 413 naming the limit, and no row is written."""
    before = rows(client)

    response = client.post(
        "/api/users", content=huge_user(), headers={"Content-Type": "application/json"}
    )

    assert 413 == response.status_code
    assert f"the limit is {MAX_BODY_BYTES} bytes" in response.json()["detail"]
    assert before == rows(client)


def test_a_streamed_huge_body_is_refused_with_413(client: TestClient) -> None:
    """A chunked body with no Content-Length that grows over the limit answers 413, and no row is written."""
    body = huge_user()
    before = rows(client)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    response = client.post(
        "/api/users", content=chunks(), headers={"Content-Type": "application/json"}
    )

    assert 413 == response.status_code
    assert "request body too large" in response.json()["detail"]
    assert before == rows(client)


def test_a_body_under_the_limit_is_served(client: TestClient) -> None:
    """A body just under the limit reaches the route (here refused by validation, not by size)."""
    padding = MAX_BODY_BYTES - 100
    body = json.dumps({"email": "ok@example.com", "name": "Ok", "pad": " " * padding})

    response = client.post(
        "/api/users", content=body.encode(), headers={"Content-Type": "application/json"}
    )

    assert response.status_code != 413
