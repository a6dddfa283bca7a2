"""`freshcache rules --url`: the rules table of a running service, read from its monitoring API."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import uvicorn

from freshcache import Cache, InvalidationManager
from freshcache.integrations.fastapi import MonitoringSettings
from tests.integrations.fastapi.apps import TOKEN, app_with
from tests.rules import service_rules
from tests.test_cli_commands import closed_port, freshcache, one_line_error


@dataclass
class Served:
    url: str
    protected: bool  # reads need the token


@pytest.fixture(params=[False, True], ids=["open-reads", "protected-reads"])
def service(request: pytest.FixtureRequest) -> Iterator[Served]:
    """A uvicorn server on a free loopback port serving the monitoring router over tests.rules' rules."""
    cache = Cache.from_url("memory://")
    manager = InvalidationManager(cache, service_rules())
    settings = MonitoringSettings(admin_token=TOKEN, protect_reads=request.param)
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen(64)
    port = listening.getsockname()[1]
    app = app_with(cache=cache, manager=manager, settings=settings)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]})
    thread.start()
    try:
        yield Served(f"http://127.0.0.1:{port}", request.param)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        listening.close()
        manager.close()
        cache.close()


def table_rows(stdout: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in line.strip("│┃").split("│")]
        for line in stdout.splitlines()
        if line.count("│") == 4
    ]


def test_rules_of_a_running_service_match_its_module(service: Served) -> None:
    """`rules --url` (with the token) prints the same table as `rules MODULE:ATTR` of the rules the service runs."""
    run = freshcache("rules", "--url", service.url, "--token", TOKEN)
    assert 0 == run.returncode, run.stderr
    module = freshcache("rules", "tests.rules:service_rules")
    assert table_rows(module.stdout) == table_rows(run.stdout)
    assert ["user", "name, score", "leaderboard"] in table_rows(run.stdout)


def test_rules_of_a_service_with_a_wrong_token_is_one_line_exit_2(service: Served) -> None:
    """A token the service refuses (reads protected) is one line naming the token, exit 2; with reads open no token is needed."""
    run = freshcache("rules", "--url", service.url, "--token", "not-the-token-at-all")
    if service.protected:
        assert 2 == run.returncode
        assert "refused the token (401)" in one_line_error(run)
    else:
        assert 0 == run.returncode, run.stderr
        assert table_rows(run.stdout)


def test_rules_of_a_service_that_is_down_is_one_line_exit_1() -> None:
    """Nothing listening at --url: one line saying the service cannot be reached, exit 1."""
    run = freshcache("rules", "--url", f"http://127.0.0.1:{closed_port()}")
    assert 1 == run.returncode
    assert one_line_error(run).startswith("freshcache: cannot reach the service")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], "one of the two"),
        (["tests.rules:service_rules", "--url", "http://127.0.0.1:1"], "one of the two"),
        (["--url", "ftp://host"], "not the address of a service"),
    ],
)
def test_rules_misuse_is_one_line_exit_2(args: list[str], expected: str) -> None:
    """Neither or both of MODULE and --url, or a URL that is no http(s) address: one line, exit 2."""
    run = freshcache("rules", *args)
    assert 2 == run.returncode
    assert expected in one_line_error(run)
