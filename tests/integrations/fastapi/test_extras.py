"""The router's optional dependencies: fastapi is its extra; redis and SQLAlchemy are not needed."""

from __future__ import annotations

from ...test_extras import import_error_of, run_without


def test_without_fastapi_the_import_names_the_extra() -> None:
    """Importing the router without FastAPI says to install freshcache[fastapi]."""
    run = run_without(["fastapi"], import_error_of("import freshcache.integrations.fastapi"))

    assert (
        "ModuleNotFoundError|fastapi|freshcache.integrations.fastapi needs the fastapi package: pip install 'freshcache[fastapi]'",
        "",
    ) == (run.stdout.strip(), run.stderr)


def test_the_router_serves_a_memory_cache_without_redis_or_sqlalchemy() -> None:
    """Without redis-py and SQLAlchemy installed, the router still builds and answers."""
    run = run_without(
        ["redis", "sqlalchemy"],
        "from fastapi import FastAPI\n"
        "from fastapi.testclient import TestClient\n"
        "from freshcache import Cache\n"
        "from freshcache.integrations.fastapi import monitoring_router\n"
        "app = FastAPI()\n"
        "app.include_router(monitoring_router(cache=Cache.from_url('memory://')))\n"
        "with TestClient(app) as client:\n"
        "    print(client.get('/api/system/health').status_code)\n",
    )

    assert ("200", "") == (run.stdout.strip(), run.stderr)
