"""The freshcache command's stats, invalidate, rules and --version, run as a user runs them,
against a real uvicorn server and a real Redis."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import uvicorn

from freshcache import Cache, InvalidationManager
from tests.integrations.fastapi.apps import TOKEN, app_with, rules

pytestmark = pytest.mark.redis


def freshcache(*args: str) -> subprocess.CompletedProcess[str]:
    """``freshcache ARGS`` in a fresh interpreter, wide enough that table rows stay whole."""
    return subprocess.run(
        [sys.executable, "-m", "freshcache.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )


def one_line_error(run: subprocess.CompletedProcess[str]) -> str:
    lines = run.stderr.strip().splitlines()
    assert 1 == len(lines), run.stderr
    assert "Traceback" not in run.stderr
    return lines[0]


@dataclass
class Service:
    url: str
    cache: Cache


@pytest.fixture
def service(cache_url: str) -> Iterator[Service]:
    """A uvicorn server on a free loopback port serving the monitoring router over Redis."""
    cache = Cache.from_url(cache_url)
    manager = InvalidationManager(cache, rules())
    # A socket listening before the server starts: clients queue in its backlog, no wait.
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen(64)
    port = listening.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app_with(cache=cache, manager=manager), log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]})
    thread.start()
    try:
        yield Service(f"http://127.0.0.1:{port}", cache)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        listening.close()
        manager.close()
        cache.close()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port: int = free.getsockname()[1]
    return port


def test_version_prints_the_package_version() -> None:
    """`freshcache --version` prints the installed version and exits 0."""
    from importlib.metadata import version

    run = freshcache("--version")

    assert (0, f"freshcache {version('freshcache')}") == (run.returncode, run.stdout.strip())


def test_stats_shows_a_running_service_metrics(service: Service) -> None:
    """`freshcache stats` shows the service's hits, misses and hit rate read over HTTP."""
    service.cache.set("user:1", "Ada", tags=["user:1"])
    service.cache.get("user:1")
    service.cache.get("user:1")
    service.cache.get("user:2")

    run = freshcache("stats", "--url", service.url)

    assert 0 == run.returncode, run.stderr
    rows = {
        cells[0]: cells[1]
        for line in run.stdout.splitlines()
        if len(cells := [c.strip() for c in line.strip("│┃").split("│")]) == 2
    }
    assert ("2", "1", "66.7%") == (rows["hits"], rows["misses"], rows["hit rate"])
    assert "0" == rows["failed invalidations"]


def test_stats_with_the_server_down_is_one_line_exit_1() -> None:
    """A service that does not answer is one line naming it, exit status 1."""
    url = f"http://127.0.0.1:{closed_port()}"

    run = freshcache("stats", "--url", url)

    assert 1 == run.returncode
    assert one_line_error(run).startswith(f"freshcache: cannot reach the service at {url}")


@pytest.mark.parametrize(
    "url", ["localhost:8000", "ftp://example.com", "http://[::1", "http://h:port"]
)
def test_stats_with_a_malformed_url_is_one_line_exit_2(url: str) -> None:
    """A URL that is not http(s)://host[:port] is refused before any I/O, in one line, exit 2."""
    run = freshcache("stats", "--url", url)

    assert 2 == run.returncode
    assert one_line_error(run).startswith(f"freshcache: --url {url!r} is not")


def test_stats_on_a_path_that_is_no_service_is_one_line_exit_1(service: Service) -> None:
    """A URL whose server answers 404 to the metrics path is one line and exit status 1."""
    run = freshcache("stats", "--url", service.url + "/nothing")

    assert 1 == run.returncode
    assert "answered 404" in one_line_error(run)


def test_invalidate_a_tag_through_the_service(service: Service) -> None:
    """`invalidate --tag --url --token` moves the tag's version in Redis and says what it did."""
    service.cache.set("user:1", "Ada", tags=["user:1"])
    before = service.cache.inspect_tag("user:1").version

    run = freshcache("invalidate", "--tag", "user:1", "--url", service.url, "--token", TOKEN)

    assert (0, "invalidated tags user:1; 0 keys") == (run.returncode, run.stdout.strip())
    assert before != service.cache.inspect_tag("user:1").version
    assert None is service.cache.get("user:1")


def test_invalidate_an_entity_through_the_service(service: Service) -> None:
    """`invalidate --entity user --id 5` invalidates the tags the service's rules give user 5."""
    service.cache.set("users", ["Ada"], tags=["users"])

    run = freshcache(
        "invalidate", "--entity", "user", "--id", "5", "--url", service.url, "--token", TOKEN
    )

    assert 0 == run.returncode, run.stderr
    assert "user:5" in run.stdout
    assert "entity types user" in run.stdout
    assert None is service.cache.get("users")


def test_invalidate_with_a_wrong_token_is_one_line_exit_2(service: Service) -> None:
    """A token the service refuses is one line, exit 2, and nothing is invalidated."""
    service.cache.set("user:1", "Ada", tags=["user:1"])

    run = freshcache(
        "invalidate", "--tag", "user:1", "--url", service.url, "--token", "wrong-token-0123456789"
    )

    assert 2 == run.returncode
    assert one_line_error(run).startswith("freshcache: the service refused the token")
    assert "Ada" == service.cache.get("user:1")


def test_invalidate_straight_on_a_redis_namespace(redis_url: str, namespace: str) -> None:
    """`invalidate --cache-url` moves the tag's version and deletes the keys in that namespace."""
    cache_url = f"{redis_url}?namespace={namespace}"
    cache = Cache.from_url(cache_url)
    cache.set("user:1", "Ada", tags=["user:1"])
    cache.set("page:home", "<html>")
    before = cache.inspect_tag("user:1").version

    run = freshcache(
        "invalidate", "--tag", "user:1", "--key", "page:home", "--cache-url", cache_url
    )

    assert (0, "invalidated tags user:1; keys page:home; 1 keys") == (
        run.returncode,
        run.stdout.strip(),
    )
    assert before != cache.inspect_tag("user:1").version
    assert (None, None) == (cache.get("user:1"), cache.get("page:home"))
    cache.close()


def test_invalidate_everything_needs_confirm(redis_url: str, namespace: str) -> None:
    """`--pattern '*'` without --confirm is refused in one line before touching the cache."""
    cache_url = f"{redis_url}?namespace={namespace}"
    cache = Cache.from_url(cache_url)
    cache.set("page:home", "<html>")

    refused = freshcache("invalidate", "--pattern", "*", "--cache-url", cache_url)
    confirmed = freshcache("invalidate", "--pattern", "*", "--confirm", "--cache-url", cache_url)

    assert 2 == refused.returncode
    assert "--confirm" in one_line_error(refused)
    assert 0 == confirmed.returncode, confirmed.stderr
    assert None is cache.get("page:home")
    cache.close()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--tag", "user:1"], "give either --url"),
        (["--cache-url", "memory://"], "nothing to invalidate"),
        (["--entity", "user", "--cache-url", "memory://"], "--entity and --id go together"),
        (["--entity", "user", "--id", "1", "--cache-url", "memory://"], "--entity needs --url"),
        (["--tag", "user:1", "--url", "http://127.0.0.1:1"], "--token"),
        (["--tag", "user:1", "--cache-url", "nosuch://x"], "nosuch"),
    ],
)
def test_invalidate_misuse_is_one_line_exit_2(args: list[str], expected: str) -> None:
    """Each wrong combination of options is one line naming the problem, exit 2."""
    run = freshcache("invalidate", *args)

    assert 2 == run.returncode
    assert expected in one_line_error(run)


def test_invalidate_with_redis_down_is_one_line_exit_1() -> None:
    """A cache URL whose Redis does not answer is one line, exit 1."""
    run = freshcache(
        "invalidate", "--tag", "user:1", "--cache-url", f"redis://127.0.0.1:{closed_port()}/0"
    )

    assert 1 == run.returncode, run.stderr
    assert one_line_error(run).startswith("freshcache: cannot reach the cache")


def test_rules_prints_the_table_of_a_module_path() -> None:
    """`freshcache rules tests.rules:service_rules` prints each entity's rules and relations."""
    run = freshcache("rules", "tests.rules:service_rules")

    assert 0 == run.returncode, run.stderr
    rows = [
        [c.strip() for c in line.strip("│┃").split("│")]
        for line in run.stdout.splitlines()
        if line.count("│") == 4
    ]
    assert ["user", "name, score", "leaderboard"] in rows
    assert ["challenge", "any field", "challenge:{id}, user:{user_id}:challenges"] in rows
    assert ["evaluation", "any field", "-> challenge (id=challenge_id)"] in rows


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("tests.nosuch", "cannot import 'tests.nosuch'"),
        ("tests.rules:nothing", "has no attribute 'nothing'"),
        ("tests.rules", "holds 0 Rules objects"),
        ("tests.rules:annotations", "not freshcache.Rules"),
    ],
)
def test_rules_at_a_wrong_path_is_one_line_exit_2(where: str, expected: str) -> None:
    """A module or attribute that holds no Rules is one line naming it, exit 2."""
    run = freshcache("rules", where)

    assert 2 == run.returncode
    assert expected in one_line_error(run)


def test_stats_watch_refreshes_until_interrupted(service: Service) -> None:
    """`stats --watch` prints the table again each period, showing new reads, and ends cleanly on SIGINT."""
    process = subprocess.Popen(
        [sys.executable, "-m", "freshcache.cli", "stats", "--url", service.url, "--watch", "0.05"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert process.stdout is not None
    try:
        misses = []
        for line in process.stdout:
            if line.startswith("│ misses"):
                misses.append(line.split("│")[2].strip())
                if misses[-1] == "0":
                    service.cache.get("absent")  # the next table must show it
                else:
                    break
    finally:
        process.send_signal(signal.SIGINT)
        _, errors = process.communicate(timeout=30)

    assert "1" == misses[-1]
    assert (0, "") == (process.returncode, errors)
