"""The framework's floors for benchmarks.service_http: bare FastAPI routes answering a constant user.

The body is the service's own answer for one user (``FRESHCACHE_FLOOR_BODY``), so every
floor encodes the same fields and bytes for every id:

- ``app``: returned as a dict, what any route pays before it does any work of its own;
- ``app_with_redis``: the same JSON, read from Redis by one raw redis-py ``GET`` per
  request (``FRESHCACHE_FLOOR_REDIS_URL``) and returned as it is: what any route that
  reads a cache on Redis pays, however little it does besides;
- ``app_with_cache``: the same JSON, a hit of freshcache's ``AsyncCache.get`` with one tag
  on that Redis, returned as it is: what a route pays that does nothing but a cache hit.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Response

BODY = os.environ.get("FRESHCACHE_FLOOR_BODY", '{"id": 1}')
USER = json.loads(BODY)
KEY = "freshcache-floor:user"


def app() -> FastAPI:
    bare = FastAPI()

    @bare.get("/api/users/{user_id}")
    async def user(user_id: int) -> Any:
        return USER

    @bare.get("/openapi.json", include_in_schema=False)
    async def ready() -> dict[str, str]:
        return {}

    return bare


def app_with_redis() -> FastAPI:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(
        os.environ.get("FRESHCACHE_FLOOR_REDIS_URL", "redis://127.0.0.1:6379/0")
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await client.set(KEY, BODY.encode())
        yield
        await client.aclose()

    floor = FastAPI(lifespan=lifespan)

    @floor.get("/api/users/{user_id}")
    async def user(user_id: int) -> Response:
        return Response(await client.get(KEY), media_type="application/json")

    @floor.get("/openapi.json", include_in_schema=False)
    async def ready() -> dict[str, str]:
        return {}

    return floor


def app_with_cache() -> FastAPI:
    from freshcache import AsyncCache

    cache = AsyncCache.from_url(
        os.environ.get("FRESHCACHE_FLOOR_REDIS_URL", "redis://127.0.0.1:6379/0")
        + "?namespace=freshcache-floor"
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await cache.set(KEY, BODY.encode(), tags=[KEY])
        yield
        await cache.aclose()

    floor = FastAPI(lifespan=lifespan)

    @floor.get("/api/users/{user_id}")
    async def user(user_id: int) -> Response:
        return Response(await cache.get(KEY, tags=[KEY]), media_type="application/json")

    @floor.get("/openapi.json", include_in_schema=False)
    async def ready() -> dict[str, str]:
        return {}

    return floor
