"""`freshcache verify` as a user runs it: it finds the stale reads of a service that skips
invalidation and exits 1, and finds none on a correct service, exit 0."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("freshcache.app") is None,
        reason="the service package freshcache.app is not in this tree",
    ),
]

SECONDS = "4"


def environment(tmp_path: Path, **variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRESHCACHE_")}
    return {**env, "FRESHCACHE_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "200", **variables}


def verify(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict]:  # type: ignore[type-arg]
    report = tmp_path / "report.json"
    run = subprocess.run(
        [sys.executable, "-m", "freshcache.cli", "verify", "--duration", SECONDS,
         "--readers", "8", "--json", str(report), *args],
        capture_output=True, text=True, timeout=600, check=False, env=environment(tmp_path),
    )  # fmt: skip
    return run, json.loads(report.read_text()) if report.exists() else {}


def test_verify_reports_the_stale_reads_of_a_service_that_skips_invalidation(
    tmp_path: Path,
) -> None:
    """Against a service run with FRESHCACHE_TEST_SKIP_INVALIDATION, verify counts stale reads, shows one, exits 1."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    broken = subprocess.Popen(
        [sys.executable, "-m", "freshcache.cli", "serve", "--port", str(port), "--no-seed",
         "--no-access-log"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env=environment(tmp_path, FRESHCACHE_TEST_SKIP_INVALIDATION="true"),
    )  # fmt: skip
    try:
        assert broken.stderr is not None
        for line in broken.stderr:  # uvicorn's log: listening once this line is out
            if "Uvicorn running on" in line:
                break
        run, report = verify(tmp_path, "--url", f"http://127.0.0.1:{port}")
    finally:
        broken.send_signal(signal.SIGTERM)
        broken.communicate(timeout=60)

    assert 1 == run.returncode, run.stdout + run.stderr
    assert report["violations"]["stale"] > 0
    assert "read" in report["examples"]["stale"][0]
    # Each violation on the run's timeline (the final reads after the run included), in
    # order of the reads' starts.
    timeline = report["timeline"]["violations"]
    assert sum(report["violations"].values()) == len(timeline)
    assert all(0 <= start <= end for start, end, _, _ in timeline)
    assert sorted(start for start, *_ in timeline) == [start for start, *_ in timeline]
    assert [] == report["timeline"]["faults"]  # none asked for
    assert "stale" in run.stdout
    assert "reads broke a rule" in run.stdout


def test_verify_finds_no_violation_on_a_correct_service(tmp_path: Path) -> None:
    """verify --spawn 1 on SQLite and the memory cache: writes and reads on every route, zero violations, exit 0."""
    run, report = verify(tmp_path, "--spawn", "1", "--cache-url", "memory://")

    assert 0 == run.returncode, run.stdout + run.stderr
    assert {"stale": 0, "future": 0, "non-monotonic": 0} == report["violations"]
    assert report["writes"] > 0
    assert set(report["reads_by_route"]) == {
        "user", "leaderboard", "challenge", "user challenges", "progress", "evaluations"
    }  # fmt: skip
    assert "no violation" in run.stdout
