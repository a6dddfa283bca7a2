"""Optional dependencies: without its extra, an integration's import names the extra to install."""

from __future__ import annotations

import subprocess
import sys

import pytest


def run_without(packages: list[str], code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter where ``packages`` cannot be imported."""
    blocker = f"import sys\nfor name in {packages!r}:\n    sys.modules[name] = None\n"
    return subprocess.run(
        [sys.executable, "-c", blocker + code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def import_error_of(statement: str) -> str:
    return (
        f"try:\n    {statement}\nexcept ImportError as exc:\n"
        "    print(type(exc).__name__, exc.name, exc, sep='|')\n"
    )


CASES = {
    "sqlalchemy integration": (
        ["sqlalchemy"],
        "import freshcache.integrations.sqlalchemy",
        "ModuleNotFoundError|sqlalchemy|freshcache.integrations.sqlalchemy needs the sqlalchemy package: pip install 'freshcache[sqlalchemy]'",
    ),
    "postgresql triggers": (
        ["sqlalchemy"],
        "from freshcache.integrations.sqlalchemy.triggers import install_triggers",
        "ModuleNotFoundError|sqlalchemy|freshcache.integrations.sqlalchemy needs the sqlalchemy package: pip install 'freshcache[sqlalchemy]'",
    ),
    "prometheus collector": (
        ["prometheus_client"],
        "from freshcache.integrations.prometheus import FreshcacheCollector",
        "ModuleNotFoundError|prometheus_client|freshcache.integrations.prometheus needs the prometheus_client package: pip install 'freshcache[prometheus]'",
    ),
    "sync redis backend": (
        ["redis"],
        "from freshcache import RedisBackend",
        "ModuleNotFoundError|redis|freshcache.RedisBackend needs the redis package: pip install 'freshcache[redis]'",
    ),
    "async redis backend": (
        ["redis"],
        "from freshcache import AsyncRedisBackend",
        "ModuleNotFoundError|redis|freshcache.AsyncRedisBackend needs the redis package: pip install 'freshcache[redis]'",
    ),
}


@pytest.mark.parametrize(
    ("blocked", "statement", "expected"), list(CASES.values()), ids=list(CASES)
)
def test_an_import_without_its_extra_names_the_extra(
    blocked: list[str], statement: str, expected: str
) -> None:
    """The ImportError (still a ModuleNotFoundError, for the missing package) says which extra to install."""
    run = run_without(blocked, import_error_of(statement))

    assert (expected, "") == (run.stdout.strip(), run.stderr)


def test_the_core_needs_no_extra() -> None:
    """With every optional package missing, freshcache imports and caches in memory."""
    run = run_without(
        ["redis", "orjson", "msgpack", "sqlalchemy", "prometheus_client", "fastapi"],
        "from freshcache import Cache\n"
        "cache = Cache.from_url('memory://')\n"
        "print(cache.get_or_load('k', lambda: 41 + 1, tags=['t']), cache.get('k', tags=['t']))\n",
    )

    assert ("42 42", "") == (run.stdout.strip(), run.stderr)


def test_a_redis_url_without_the_extra_is_a_configuration_error() -> None:
    """Cache.from_url('redis://...') without redis-py says which extra to install."""
    run = run_without(
        ["redis"],
        "from freshcache import Cache, ConfigurationError\n"
        "try:\n    Cache.from_url('redis://127.0.0.1:6379/0')\n"
        "except ConfigurationError as exc:\n    print(exc)\n",
    )

    assert "pip install 'freshcache[redis]'" in run.stdout


def test_the_relay_command_without_sqlalchemy_is_one_line() -> None:
    """`freshcache relay` without the sqlalchemy extra prints one line naming it and exits 2."""
    run = run_without(
        ["sqlalchemy"],
        "from freshcache.cli import main\n"
        "sys.exit(main(['relay', '--once', '--database-url', 'sqlite://', '--cache-url', 'memory://']))\n",
    )

    assert 2 == run.returncode
    assert [
        "freshcache: freshcache.integrations.sqlalchemy needs the sqlalchemy package: pip install 'freshcache[sqlalchemy]'"
    ] == run.stderr.strip().splitlines()
