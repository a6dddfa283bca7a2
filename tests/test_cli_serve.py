"""`freshcache serve`: its refusal of several workers on the memory cache, its help listing
every setting, and a real start; these need the service package (freshcache.app)."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("freshcache.app") is None,
    reason="the service package freshcache.app is not in this tree",
)


def environment(tmp_path: Path, **variables: str) -> dict[str, str]:
    """This process's environment without any FRESHCACHE_* setting, plus ``variables``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRESHCACHE_")}
    return {**env, "FRESHCACHE_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "200", **variables}


def serve(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "freshcache.cli", "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


@pytest.mark.parametrize("cache_url", [None, "memory://"])
def test_serve_refuses_several_workers_on_the_memory_cache(
    tmp_path: Path, cache_url: str | None
) -> None:
    """`serve --workers 2` on the memory cache (named or default) is one line saying to use Redis, exit 2."""
    variables = {} if cache_url is None else {"FRESHCACHE_CACHE_URL": cache_url}

    run = serve(environment(tmp_path, **variables), "--workers", "2")

    assert 2 == run.returncode
    lines = run.stderr.strip().splitlines()
    assert 1 == len(lines), run.stderr
    assert "FRESHCACHE_CACHE_URL=redis://" in lines[0]


def test_serve_help_lists_every_setting_with_its_variable(tmp_path: Path) -> None:
    """`serve --help` names each field of the service's Settings as its FRESHCACHE_ variable."""
    from freshcache.app.settings import Settings

    run = serve(environment(tmp_path), "--help")

    assert 0 == run.returncode, run.stderr
    for name, field in Settings.model_fields.items():
        assert f"FRESHCACHE_{name.upper()}" in run.stdout
        assert (field.description or "").split()[0] in run.stdout


def test_serve_starts_and_prints_its_urls(tmp_path: Path) -> None:
    """`serve` on the embedded defaults prints the docs and dashboard URLs, answers on them, and stops on SIGTERM."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "freshcache.cli", "serve", "--port", str(port), "--no-seed"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(tmp_path),
    )
    try:
        assert process.stdout is not None
        assert process.stderr is not None
        printed = [process.stdout.readline().strip(), process.stdout.readline().strip()]
        assert [
            f"API docs:  http://127.0.0.1:{port}/docs",
            f"Dashboard: http://127.0.0.1:{port}/dashboard",
        ] == printed
        for line in process.stderr:  # uvicorn's log: listening once this line is out
            if "Uvicorn running on" in line:
                break
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/docs", timeout=10) as docs:
            assert 200 == docs.status
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/api/system/health", timeout=10
        ) as health:
            assert "status" in json.loads(health.read())
    finally:
        process.send_signal(signal.SIGTERM)
        _, rest = process.communicate(timeout=30)
    # uvicorn re-raises the signal it handled once shut down, so the status is SIGTERM's.
    assert process.returncode in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in rest
