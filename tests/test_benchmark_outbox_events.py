"""Smoke test of the outbox_events benchmark: it runs in quick mode and reports every contestant."""

from __future__ import annotations

from pathlib import Path

import pytest

from .databases import Database
from .test_benchmarks import RATIO, run_quick, table_rows

CONTESTANTS = [
    "SQLAlchemy alone, no cache",
    "outbox row alone, no events",
    "events on, in-process bus",
    "events on, Redis Streams bus",
]


@pytest.mark.redis
def test_outbox_events_suite_reports_every_contestant(
    redis_url: str,
    namespace: str,
    postgres: Database,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The outbox_events suite prints a row with a ratio for writes with events off and on."""
    printed = run_quick(
        "outbox_events",
        tmp_path,
        capsys,
        "--redis-url",
        redis_url,
        "--namespace",
        namespace,
        "--database-url",
        postgres.sync_url,
    )
    rows = table_rows(printed)
    for contestant in CONTESTANTS:
        assert contestant in rows, f"{contestant!r} is missing from the tables:\n{printed}"
        assert RATIO.fullmatch(rows[contestant][2]), rows[contestant]
    assert (tmp_path / "latest.png").read_bytes().startswith(b"\x89PNG")
