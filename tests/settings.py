"""Where the tests find the real servers, and whether a missing one fails the run."""

from __future__ import annotations

import os

REDIS_URL = os.environ.get("FRESHCACHE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
DATABASE_URL = os.environ.get(
    "FRESHCACHE_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REQUIRE_SERVICES = os.environ.get("FRESHCACHE_REQUIRE_SERVICES") == "1"
