"""The framework's floor for benchmarks.service_http: a bare FastAPI route answering a constant user.

The body is the service's own answer for one user (``FRESHCACHE_FLOOR_BODY``), returned as
a dict, so FastAPI encodes the same fields and bytes for every id: what any route pays
before it does any work of its own.
"""

from __future__ import annotations

import json
import os
from typing import Any

from fastapi import FastAPI

USER = json.loads(os.environ.get("FRESHCACHE_FLOOR_BODY", '{"id": 1}'))


def app() -> FastAPI:
    bare = FastAPI()

    @bare.get("/api/users/{user_id}")
    async def user(user_id: int) -> Any:
        return USER

    @bare.get("/openapi.json", include_in_schema=False)
    async def ready() -> dict[str, str]:
        return {}

    return bare
