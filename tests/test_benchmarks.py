"""Smoke tests of the benchmarks: each suite runs in quick mode and reports every contestant.

They check the shape of the report, never a timing: performance is not asserted in tests.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from benchmarks import run

from .databases import Database

EXPECTED = {
    "redis": [
        "redis.asyncio GET",
        "redis.asyncio GET + json.loads",
        "redis.asyncio MGET of payload + a 16-byte version",
        "freshcache AsyncCache.get_or_load (1 tag)",
        "freshcache AsyncCache.get(tags=[tag])",
        "cashews get (redis)",
        "aiocache RedisCache.get",
        "redis GET",
        "redis GET + json.loads",
        "redis MGET of payload + a 16-byte version",
        "freshcache Cache.get_or_load (1 tag)",
        "freshcache Cache.get(tags=[tag])",
        "dogpile.cache redis region.get",
    ],
    "memory": [
        "freshcache AsyncCache.get_or_load (1 tag)",
        "freshcache AsyncCache.get",
        "cashews get (mem)",
        "aiocache SimpleMemoryCache.get",
        "freshcache Cache.get_or_load (1 tag)",
        "freshcache Cache.get",
        "cachetools TTLCache.get",
        "cachetools TTLCache.get under threading.Lock",
        "dogpile.cache memory region.get",
    ],
    # The quick run's sizes: 1, 10 and 100 dependents, cashews at 100.
    "tags": [
        "freshcache invalidate_tags, 1 dependent",
        "freshcache invalidate_tags, 10 dependents",
        "freshcache invalidate_tags, 100 dependents",
        "cashews delete_tags, 100 dependents",
    ],
    # One table per transaction size (1, 10, 100 entities); the reference repeats in each.
    "manager": [
        "redis.asyncio DEL of the tags, 1 writer",
        "redis.asyncio DEL of the tags, 16 writers",
        "freshcache invalidate_entity, 1 writer",
        "freshcache invalidate_entity, 16 writers",
        "freshcache invalidate_entities, 1 writer",
        "freshcache invalidate_entities, 16 writers",
    ],
    "sqlalchemy": [
        "SQLAlchemy alone, no cache",
        "freshcache commit mode",
        "freshcache strict mode",
        "the relay's SQL alone: claim 1,000, delete, commit",
        "freshcache AsyncOutboxRelay.run_once()",
    ],
    "outbox_events": [
        "SQLAlchemy alone, no cache",
        "outbox row alone, no events",
        "events on, in-process bus",
        "events on, Redis Streams bus",
    ],
}
RATIO = re.compile(r"\d[\d,]*\.?\d*x")


def table_rows(markdown: str) -> dict[str, list[str]]:
    """Each printed table row's cells, by contestant (the header and rule lines left out)."""
    rows = {}
    for line in markdown.splitlines():
        if not line.startswith("| ") or line.startswith(("| contestant ", "| ---")):
            continue
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0]] = cells
    return rows


def run_quick(suite: str, output: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    run.main(["--quick", "--suite", suite, "--output", str(output), *extra])
    return capsys.readouterr().out


def assert_report(suite: str, printed: str, output: Path) -> None:
    rows = table_rows(printed)
    for contestant in EXPECTED[suite]:
        assert contestant in rows, f"{contestant!r} is missing from the tables:\n{printed}"
        ratio = rows[contestant][2]
        assert RATIO.fullmatch(ratio), f"{contestant!r} has no numeric ratio: {ratio!r}"
    document = json.loads((output / "latest.json").read_text())
    assert {"cpu_count", "python", "packages", "timestamp"} <= set(document["machine"])
    saved = [row["contestant"] for table in document["tables"] for row in table["rows"]]
    assert EXPECTED[suite] == list(dict.fromkeys(saved))
    for table in document["tables"]:
        if table["rate"] is not None:
            assert all(row["median_per_second"] > 0 for row in table["rows"]), table
    assert (output / "latest.png").read_bytes().startswith(b"\x89PNG")


def test_memory_suite_reports_every_contestant(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The memory suite prints a table row with a ratio for every contestant, and saves results."""
    printed = run_quick("memory", tmp_path, capsys)
    assert_report("memory", printed, tmp_path)


@pytest.mark.redis
@pytest.mark.parametrize("suite", ["redis", "tags", "manager"])
def test_redis_suites_report_every_contestant(
    suite: str,
    redis_url: str,
    namespace: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The Redis suites print a table row with a ratio for every contestant, and save results."""
    printed = run_quick(suite, tmp_path, capsys, "--redis-url", redis_url, "--namespace", namespace)
    assert_report(suite, printed, tmp_path)


@pytest.mark.redis
@pytest.mark.parametrize("suite", ["sqlalchemy", "outbox_events"])
def test_sqlalchemy_suites_report_every_contestant(
    suite: str,
    redis_url: str,
    namespace: str,
    postgres: Database,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The PostgreSQL suites print a row with a ratio for every contestant (update modes, the relay, writes with events off and on), and save results."""
    # The fixture only finds the server (or skips); the suite makes and drops its own schema.
    printed = run_quick(
        suite,
        tmp_path,
        capsys,
        "--redis-url",
        redis_url,
        "--namespace",
        namespace,
        "--database-url",
        postgres.sync_url,
    )
    assert_report(suite, printed, tmp_path)
