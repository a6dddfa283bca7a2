"""The newcomer's path: a fresh clone, `uv run freshcache serve`, the API answering, a clean stop."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("uv") is None, reason="uv is not installed"),
    pytest.mark.skipif(not (ROOT / ".git").exists(), reason="not a git checkout"),
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def call(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def wait_healthy(process: subprocess.Popen[str], base: str, deadline: float) -> None:
    """Polls the health route until 200; fails if the process exits or the deadline passes."""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"serve exited with {process.returncode} before answering")
        try:
            if call("GET", f"{base}/api/system/health")[0] == 200:
                return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.2)  # polling a server that is still starting, not synchronizing threads
    pytest.fail("serve did not answer /api/system/health with 200 in time")


def test_a_fresh_clone_serves_the_api_with_uv_run(tmp_path: Path) -> None:
    """A clone of the committed tree runs `uv run freshcache serve`, answers the API, and stops cleanly on SIGTERM."""
    clone = tmp_path / "clone"
    subprocess.run(
        ["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, capture_output=True
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FRESHCACHE_", "VIRTUAL_ENV", "UV_PROJECT"))
    }
    env["FRESHCACHE_DATA_DIR"] = str(tmp_path / "data")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        ["uv", "run", "--quiet", "freshcache", "serve", "--port", str(port)],
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        wait_healthy(process, base, time.monotonic() + 180)

        status, user = call(
            "POST", f"{base}/api/users", {"email": "new@example.com", "name": "New"}
        )
        assert 201 == status, user
        status, read = call("GET", f"{base}/api/users/{user['id']}")
        assert (200, "new@example.com") == (status, read["email"])
        status, board = call("GET", f"{base}/api/leaderboard")
        assert 200 == status
        assert isinstance(board, list)
        assert board, "the seeded data set gives the leaderboard rows"
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    # uvicorn re-raises the signal it handled once shut down; uv reports it as 128 + 15.
    assert process.returncode in (0, -signal.SIGTERM, 128 + signal.SIGTERM), stderr
    assert "Application shutdown complete" in stderr
