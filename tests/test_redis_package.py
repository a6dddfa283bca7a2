"""Redis knowledge in one place: freshcache._redis, shared by the async and sync backends and the event transport."""

from __future__ import annotations

import ast
import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from freshcache import (
    AsyncRedisBackend,
    BackendError,
    ConfigurationError,
    Event,
    EventTypes,
    RedisBackend,
    SerializationError,
)
from freshcache._async.events.transports.redis_streams import AsyncRedisStreamsTransport
from freshcache._redis.keys import RedisKeys
from freshcache._redis.wire import HeaderParts, decode_entry, encode_entry
from freshcache._sync.events.transports.redis_streams import RedisStreamsTransport

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "freshcache"


def imported_modules(path: Path) -> set[str]:
    """The modules ``path`` imports at any depth, relative imports resolved within freshcache."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(part for part in (base, node.module or "") if part)
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("tags", [[], ["user:1"], ["user:1", "team:7", "users"]])
def test_cached_header_parts_frame_exactly_the_header_a_fill_writes(tags: list[str]) -> None:
    """The hit path's cached header bytes, with the versions between them, are the start of the stored entry."""
    versions = [f"{n:016x}" for n in range(len(tags))]
    entry = encode_entry("json", tags, versions, b'{"id": 1}')

    parts = HeaderParts("json").of(tags)
    header = parts[0] + b"".join(
        version.encode() + part for version, part in zip(versions, parts[1:], strict=True)
    )

    assert b'{"id": 1}' == entry[len(header) :]
    assert header == entry[: len(header)]
    pairs = [(tag.encode(), version.encode()) for tag, version in zip(tags, versions, strict=True)]
    assert ("json", pairs, b'{"id": 1}') == decode_entry(entry)


@pytest.mark.parametrize("data", [b"", b"no header", b"fc2 json 0\n{}", b"fc1 json 2\na 1\n"])
def test_bytes_that_are_not_an_entry_are_a_serialization_error(data: bytes) -> None:
    """Stored bytes without a whole fc1 header fail as SerializationError, not as a parsing crash."""
    with pytest.raises(SerializationError, match="stored entry is not a freshcache entry"):
        decode_entry(data)


def test_every_key_the_backend_and_the_transport_write_is_named_by_the_key_scheme(
    redis_url: str, namespace: str
) -> None:
    """Entries, versions, pending holders, leases and the event stream are all where RedisKeys says."""
    keys = RedisKeys(namespace)
    backend = RedisBackend.from_url(redis_url, namespace=namespace)
    transport = RedisStreamsTransport.from_url(redis_url, service="tests", namespace=namespace)
    try:
        ticket = backend.begin_fill("user:1", ["user:1"], token="loader", lease_ttl=30)
        assert backend.fill(
            "user:1", {"id": 1}, ["user:1"], ticket.versions, ttl=30, token="loader"
        )
        backend.mark_pending(["held"], token="writer", ttl=30)
        backend.begin_fill("leased", [], token="loader", lease_ttl=30)
        transport.publish([Event(EventTypes.USER_CREATED, {"id": 1})])

        names = {name.decode() for name in backend.client.scan_iter(match=keys.everything)}
    finally:
        transport.close()
        backend.close()

    expected = {
        keys.entry + "user:1",
        *keys.tags(["user:1", "held"]),
        *keys.holds(["held"]),
        keys.lease + "leased",
        keys.events,
    }
    assert expected == names
    assert f"{{{namespace}}}:events:dead:tests" == keys.dead_letters("tests")


@pytest.mark.parametrize("namespace", ["a}b", "a{b}", "has space", "x" * 513])
def test_a_namespace_that_would_break_the_scheme_is_refused_by_every_user_of_it(
    redis_url: str, namespace: str
) -> None:
    """A namespace that is not a valid key is a configuration error naming it, for the backends and the transport alike."""
    with pytest.raises(ConfigurationError, match=r"^namespace: "):
        RedisKeys(namespace)
    for make in (
        lambda: RedisBackend.from_url(redis_url, namespace=namespace),
        lambda: AsyncRedisBackend.from_url(redis_url, namespace=namespace),
        lambda: AsyncRedisStreamsTransport.from_url(
            redis_url, service="tests", namespace=namespace
        ),
    ):
        with pytest.raises(ConfigurationError, match=r"^namespace: "):
            make()


def test_a_transport_used_from_another_event_loop_fails_as_backend_error(
    redis_url: str, namespace: str
) -> None:
    """The event transport maps a client bound to another event loop as the backend does: BackendError, never a RuntimeError."""
    transport = AsyncRedisStreamsTransport.from_url(redis_url, service="tests", namespace=namespace)
    event = Event(EventTypes.USER_CREATED, {"id": 1})
    first = asyncio.new_event_loop()
    try:
        first.run_until_complete(transport.publish([event]))  # connects in the first loop
        with pytest.raises(BackendError, match="loop") as raised:
            asyncio.run(transport.publish([event]))
    finally:
        # The connection belongs to the first loop: only there can it be closed.
        first.run_until_complete(transport.aclose())
        first.close()

    assert isinstance(raised.value.__cause__, RuntimeError)


def test_the_redis_package_depends_on_neither_the_async_nor_the_sync_code() -> None:
    """freshcache._redis imports nothing from _async or _sync, so every backend and transport can share it."""
    imports = {
        path.name: sorted(
            name
            for name in imported_modules(path)
            if name.startswith(("freshcache._async", "freshcache._sync"))
        )
        for path in sorted((PACKAGE / "_redis").glob("*.py"))
    }

    assert {
        "__init__.py",
        "connections.py",
        "errors.py",
        "keys.py",
        "scripts.py",
        "urls.py",
        "wire.py",
    } == set(imports)
    assert {name: [] for name in imports} == imports


def test_the_contract_values_know_nothing_of_redis() -> None:
    """_entries.py, the values of the backend contract, imports neither redis-py nor the Redis package."""
    imports = imported_modules(PACKAGE / "_entries.py")

    assert [] == sorted(
        name for name in imports if name.split(".")[0] == "redis" or "._redis" in name
    )


def test_only_the_error_map_needs_redis_py_to_import() -> None:
    """Without redis-py, the key scheme, the wire format, the scripts and the URL rules still import."""
    code = (
        "import sys\nsys.modules['redis'] = None\n"
        "import freshcache._redis.keys, freshcache._redis.wire, freshcache._redis.scripts\n"
        "import freshcache._redis.urls\n"
        "try:\n    import freshcache._redis.errors\nexcept ImportError:\n    print('errors needs redis')\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )

    assert ("errors needs redis", "") == (run.stdout.strip(), run.stderr)
