"""schemathesis against the router's OpenAPI: no 5xx, every response matches its schema."""

from __future__ import annotations

import asyncio

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from freshcache import AsyncCache, AsyncEventBus, AsyncInvalidationManager

from .apps import AUTH, app_with, rules

cache = AsyncCache.from_url("memory://")
# Something to inspect: a key filled at its tag's version, then the tag moved.
asyncio.run(cache.set("user:1", {"id": 1}, tags=["user:1"]))
asyncio.run(cache.invalidate_tags(["user:1"]))
app = app_with(cache=cache, manager=AsyncInvalidationManager(cache, rules()), bus=AsyncEventBus())
schema = schemathesis.openapi.from_asgi("/openapi.json", app)

CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
]


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_router_answers_to_its_schema(case: schemathesis.Case) -> None:
    """Every generated request, with the admin token, answers below 500 and as its schema says."""
    case.call_and_validate(headers={**(case.headers or {}), **AUTH}, checks=CHECKS)
