"""Smoke tests of the benchmarks: each suite runs in quick mode and reports every contestant.

They check the shape of the report, never a timing: performance is not asserted in tests.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import instructions, run
from benchmarks.settings import Settings

from . import benchmark_loops
from .databases import Database

ROOT = Path(__file__).resolve().parent.parent

EXPECTED = {
    "redis": [
        "redis.asyncio GET",
        "redis.asyncio GET + json.loads",
        "redis.asyncio MGET of payload + a 16-byte version",
        "asyncio socket: the same MGET's bytes, no client (the floor)",
        "freshcache AsyncCache.get_or_load (1 tag)",
        "freshcache AsyncCache.get(tags=[tag])",
        "freshcache AsyncCache.get (no tags)",
        "asyncio socket: the tagless get's script by SHA, no client (its floor)",
        "cashews get (redis)",
        "aiocache RedisCache.get",
        "redis GET",
        "redis GET + json.loads",
        "redis MGET of payload + a 16-byte version",
        "blocking socket: the same MGET's bytes, no client (the floor)",
        "freshcache Cache.get_or_load (1 tag)",
        "freshcache Cache.get(tags=[tag])",
        "freshcache Cache.get (no tags)",
        "blocking socket: the tagless get's script by SHA, no client (its floor)",
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
        "socket: the invalidate script's EVALSHA, no client, 1 writer (the floor)",
        "freshcache invalidate_entity, 1 writer",
        "freshcache invalidate_entity, 16 writers",
        "freshcache invalidate_entities, 1 writer",
        "freshcache invalidate_entities, 16 writers",
    ],
    "sqlalchemy": [
        "SQLAlchemy alone, no cache",
        "freshcache commit mode",
        "freshcache strict mode",
        "floor: SQLAlchemy + the outbox INSERT, no cache",
        "floor: SQLAlchemy + the outbox INSERT on the driver's cursor, no cache",
        "floor: SQLAlchemy + the outbox INSERT + one raw DEL of the tags",
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
        ratio = rows[contestant][2].split(" (")[0]  # the median ratio, then its spread
        assert RATIO.fullmatch(ratio), f"{contestant!r} has no numeric ratio: {ratio!r}"
    document = json.loads((output / "benchmarks.json").read_text())
    assert {"cpu_count", "python", "packages", "timestamp"} <= set(document["machine"])
    saved = [row["contestant"] for table in document["tables"] for row in table["rows"]]
    assert EXPECTED[suite] == list(dict.fromkeys(saved))
    for table in document["tables"]:
        if table["rate"] is not None:
            assert all(row["median_per_second"] > 0 for row in table["rows"]), table
    assert_png(output / "benchmarks.png")
    assert document["chart"]["panels"] == len(document["tables"])


def assert_png(path: Path) -> tuple[int, int]:
    """A PNG file, not empty, with a plausible size; returns its width and height."""
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n"), f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert 300 < width < 5000, width
    assert 100 < height < 20000, height
    return width, height


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


def test_bench_command_writes_the_page_the_plot_and_the_results(tmp_path: Path) -> None:
    """``freshcache bench --quick`` fills every generated region of the page from the run,
    draws one panel per table, and keeps the hand-written prose."""
    command = ["bench", "--quick", "--suite=memory", f"--output={tmp_path}"]
    done = subprocess.run(
        [sys.executable, "-m", "freshcache.cli", *command],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    document = json.loads((tmp_path / "benchmarks.json").read_text())
    assert document["suites"] == ["memory"]
    assert document["instructions"] is None
    assert "--quick" in document["instructions_skipped"]
    assert document["chart"] == {"file": "benchmarks.png", "figures": 1, "panels": 2}
    assert_png(tmp_path / "benchmarks.png")
    page = (tmp_path / "benchmarks.md").read_text()
    template = (ROOT / "docs" / "benchmarks.md").read_text()
    regions = re.findall(r"<!-- generated: ([\w:]+) -->", template)
    assert {"run", "goals", "plot", "suite:memory", "suite:redis"} <= set(regions)
    assert re.findall(r"<!-- generated: ([\w:]+) -->", page) == regions
    memory = page.split("<!-- generated: suite:memory -->")[1].split("<!-- /generated")[0]
    rows = table_rows(memory)
    for contestant in EXPECTED["memory"]:
        assert RATIO.fullmatch(rows[contestant][2].split(" (")[0]), rows[contestant]
    assert "was not part of this run" in page.split("<!-- generated: suite:redis -->")[1]
    assert "![Every table's ratios" in page
    assert "(benchmarks.png)" in page
    assert "Quick mode" in page
    assert document["command"] in page
    assert "*What it measures:* one caller reads one hot key" in page  # prose kept


def test_bench_command_outside_a_checkout_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Run from a directory that is not the repository (and installed from none), the
    command cannot find the benchmarks: one line, exit status 2, nothing measured."""
    from freshcache.cli import bench, main

    assert bench.checkout(ROOT / "docs") == ROOT
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(bench, "INSTALLED", tmp_path)
    assert main(["bench", "--no-callgrind"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("freshcache: freshcache bench runs the project's benchmarks")
    assert "\n" not in error
    assert str(tmp_path) in error
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_instruction_counts_repeat_and_see_twice_the_work() -> None:
    """Under callgrind, a loop doing twice the work per operation counts about twice the
    instructions, and two counting runs agree within 1 %: start-up and set-up cancel."""
    settings = Settings.for_run(quick=True, memory_ops=200)
    first, second = instructions.count_modules(["tests.benchmark_loops"], settings, repeats=2)
    key = ("Known loops", benchmark_loops.ONCE), ("Known loops", benchmark_loops.TWICE)
    for counts in (first, second):
        once, twice = counts[key[0]], counts[key[1]]
        assert 1.9 < twice / once < 2.1, counts
        assert once > 2_000, counts  # 200 additions and multiplications, and the calls
    for row in key:
        assert abs(first[row] / second[row] - 1) < 0.01, (first, second)
