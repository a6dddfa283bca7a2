"""The Redis backend's direct path: what it keeps of redis-py's wrappers, on real servers.

Reads (the hit's MGET, the GET_ENTRIES script) and the tag scripts (invalidate, mark and
clear pending marks) go through connections the backend holds and drives itself. Each
test here checks one thing those wrappers gave: a read timeout, a bounded pool, one
retry on a dropped connection, the NOSCRIPT fallback, a clean close; that clients the
path cannot drive keep redis-py's; and that a tag script sent twice (the retry) leaves
nothing more valid than one run would.
"""

from __future__ import annotations

import gc
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio
import redis.asyncio.sentinel

from freshcache import BackendError, BackendTimeoutError
from freshcache._async.backends.redis import AsyncRedisBackend
from freshcache._async.backends.redis_pool import AsyncDirectPool
from freshcache._entries import MISSING
from freshcache._inspection import TagState
from freshcache._redis.connections import pack_text

from ..concurrency import TIMEOUT, AsyncNursery, async_pause, async_wait_until
from ..redis_server import RedisServer

CLIENT_ID = pack_text("CLIENT", ["ID"])


def direct(backend: AsyncRedisBackend) -> AsyncDirectPool:
    assert backend._direct is not None, "this client's reads should take the direct path"
    return backend._direct


async def store(backend: AsyncRedisBackend, key: str, value: object, tags: list[str]) -> None:
    ticket = await backend.begin_fill(key, tags, token="filler", lease_ttl=None)
    assert await backend.fill(key, value, tags, ticket.versions, ttl=60, token=None)


async def wait_for_no_clients(url: str) -> None:
    """Return once the server has no client left but the one asking; fail after TIMEOUT."""
    probe = redis.asyncio.Redis.from_url(url)
    deadline = time.monotonic() + TIMEOUT
    try:
        while len(await probe.client_list()) > 1:
            assert time.monotonic() < deadline, "the server still has clients"
            await async_pause()
    finally:
        await probe.aclose()


async def kill_direct_connection(backend: AsyncRedisBackend, redis_url: str) -> int:
    """Kill the direct path's one idle connection from another client; its id."""
    killed: int = await direct(backend).call(CLIENT_ID)
    killer = redis.asyncio.Redis.from_url(redis_url)
    try:
        assert 1 == await killer.client_kill_filter(_id=killed)
    finally:
        await killer.aclose()
    return killed


@pytest.fixture
async def backend(redis_url: str, namespace: str) -> AsyncIterator[AsyncRedisBackend]:
    backend = AsyncRedisBackend.from_url(redis_url, namespace=namespace)
    yield backend
    await backend.aclose()


async def test_a_read_from_a_stalled_server_times_out_and_its_connection_is_closed(
    private_redis: RedisServer,
) -> None:
    """A read that gets no reply fails with BackendTimeoutError after about socket_timeout, its connection is closed, and reads hit again once the server answers."""
    backend = AsyncRedisBackend.from_url(private_redis.url, socket_timeout=0.2)
    try:
        await store(backend, "k", "v", ["t"])
        assert "v" == await backend.get("k", ["t"])
        assert 1 == direct(backend).open_connections

        with private_redis.paused():
            for tags in (["t"], None):  # the MGET and the script
                started = time.monotonic()
                with pytest.raises(BackendTimeoutError):
                    await backend.get("k", tags)
                waited = time.monotonic() - started
                assert 0.2 <= waited < 2.0
                assert 0 == direct(backend).open_connections

        assert "v" == await backend.get("k", ["t"])
        assert "v" == await backend.get("k")
    finally:
        await backend.aclose()


async def test_the_pool_never_opens_more_than_max_connections(private_redis: RedisServer) -> None:
    """Sixteen reads at once on a pool bounded at two all hit, on at most two connections."""
    backend = AsyncRedisBackend.from_url(private_redis.url, max_connections=2)
    try:
        await store(backend, "k", "v", ["t"])
        async with AsyncNursery() as nursery:
            reads = [nursery.start_soon(backend.get, "k", ["t"]) for _ in range(16)]

        assert ["v"] * 16 == [read.result() for read in reads]
        assert 1 <= direct(backend).open_connections <= 2
    finally:
        await backend.aclose()


async def test_a_read_waiting_for_a_connection_gives_up_after_the_socket_timeout(
    private_redis: RedisServer,
) -> None:
    """With the one connection stuck on a stalled server, a second read waits for it at most about socket_timeout, then fails."""
    backend = AsyncRedisBackend.from_url(private_redis.url, max_connections=1, socket_timeout=0.3)
    try:
        await store(backend, "k", "v", ["t"])
        assert "v" == await backend.get("k", ["t"])

        with private_redis.paused():
            started = time.monotonic()
            async with AsyncNursery(errors_expected=True) as nursery:
                stuck = nursery.start_soon(backend.get, "k", ["t"])
                waiting = nursery.start_soon(backend.get, "k", ["t"])
            waited = time.monotonic() - started

        with pytest.raises(BackendTimeoutError):
            stuck.result()
        with pytest.raises(BackendError):
            waiting.result()
        assert waited < 3.0
        assert direct(backend).open_connections <= 1
        assert "v" == await backend.get("k", ["t"])
    finally:
        await backend.aclose()


async def test_a_read_on_a_killed_connection_is_sent_again_on_a_new_one(
    backend: AsyncRedisBackend, redis_url: str
) -> None:
    """After the server drops the read's connection (CLIENT KILL), the read is sent once more on a new connection and hits."""
    await store(backend, "k", "v", ["t"])
    assert "v" == await backend.get("k", ["t"])
    killed = await kill_direct_connection(backend, redis_url)

    assert "v" == await backend.get("k", ["t"])
    assert killed != await direct(backend).call(CLIENT_ID)


async def test_without_retries_a_read_on_a_killed_connection_fails(
    redis_url: str, namespace: str
) -> None:
    """With retries=0 the read on a killed connection fails with BackendError: the retry is what saves it otherwise."""
    backend = AsyncRedisBackend.from_url(redis_url, namespace=namespace, retries=0)
    try:
        await store(backend, "k", "v", ["t"])
        assert "v" == await backend.get("k", ["t"])
        await kill_direct_connection(backend, redis_url)

        with pytest.raises(BackendError):
            await backend.get("k", ["t"])
        assert "v" == await backend.get("k", ["t"])  # on a new connection
    finally:
        await backend.aclose()


async def test_a_restarted_server_costs_one_retry_and_no_error(private_redis: RedisServer) -> None:
    """After the server restarts, every idle connection is dead: the first read retries on a new one and the others are closed, so no read fails."""
    backend = AsyncRedisBackend.from_url(private_redis.url)
    try:
        await store(backend, "k", "v", ["t"])
        async with AsyncNursery() as nursery:
            for _ in range(4):
                nursery.start_soon(backend.get, "k", ["t"])
        assert direct(backend).open_connections >= 1

        private_redis.stop()
        private_redis.start()  # persistent: the entry survives

        for _ in range(4):
            assert "v" == await backend.get("k", ["t"])
        assert 1 == direct(backend).open_connections
    finally:
        await backend.aclose()


async def test_the_script_is_sent_again_after_script_flush(backend: AsyncRedisBackend) -> None:
    """A tagless read after SCRIPT FLUSH gets NOSCRIPT for its SHA, runs the script's text, and the server has it again."""
    await store(backend, "k", "v", ["t"])
    assert "v" == await backend.get("k")
    await backend.client.script_flush()
    sha = backend._scripts.get_entries.sha
    assert [False] == await backend.client.script_exists(sha)

    assert "v" == await backend.get("k")
    assert {"k": "v"} == await backend.get_many(["k"])
    assert [True] == await backend.client.script_exists(sha)


TAG_SCRIPTS = ["invalidate", "mark_pending", "clear_pending"]


async def run_tag_script(backend: AsyncRedisBackend, name: str, tags: list[str]) -> None:
    if name == "invalidate":
        await backend.invalidate_tags(tags)
    elif name == "mark_pending":
        await backend.mark_pending(tags, token="writer", ttl=60)
    else:
        await backend.clear_pending(tags, token="writer", committed=True)


@pytest.mark.parametrize("name", TAG_SCRIPTS)
async def test_a_tag_script_is_sent_again_after_script_flush(
    backend: AsyncRedisBackend, name: str
) -> None:
    """After SCRIPT FLUSH each tag script gets NOSCRIPT for its SHA, runs its text, and takes effect."""
    await store(backend, "k", "v", ["t"])
    await backend.client.script_flush()
    sha = getattr(backend._scripts, name).sha

    await run_tag_script(backend, name, ["t"])

    assert [True] == await backend.client.script_exists(sha)
    assert await backend.get("k", ["t"]) is MISSING


@pytest.mark.parametrize("name", TAG_SCRIPTS)
async def test_a_tag_script_on_a_killed_connection_is_sent_again_on_a_new_one(
    backend: AsyncRedisBackend, redis_url: str, name: str
) -> None:
    """A tag script whose direct connection the server dropped is sent once more on a new one, and takes effect."""
    await store(backend, "k", "v", ["t"])
    killed = await kill_direct_connection(backend, redis_url)

    await run_tag_script(backend, name, ["t"])

    assert await backend.get("k", ["t"]) is MISSING
    assert killed != await direct(backend).call(CLIENT_ID)


@pytest.mark.parametrize("name", TAG_SCRIPTS)
async def test_without_retries_a_tag_script_on_a_killed_connection_fails(
    redis_url: str, namespace: str, name: str
) -> None:
    """With retries=0 a tag script on a killed direct connection fails with BackendError and changes nothing: it took the direct path."""
    backend = AsyncRedisBackend.from_url(redis_url, namespace=namespace, retries=0)
    try:
        await store(backend, "k", "v", ["t"])
        if name == "clear_pending":
            await backend.mark_pending(["t"], token="writer", ttl=60)
        before = await backend.describe_tag("t")
        await kill_direct_connection(backend, redis_url)

        with pytest.raises(BackendError):
            await run_tag_script(backend, name, ["t"])
        after = await backend.describe_tag("t")
        assert (before.version, set(before.holders)) == (after.version, set(after.holders))

        await run_tag_script(backend, name, ["t"])  # on a new connection
        done = await backend.describe_tag("t")
        assert (before.version, set(before.holders)) != (done.version, set(done.holders))
    finally:
        await backend.aclose()


async def test_a_tag_script_on_a_stalled_server_times_out(private_redis: RedisServer) -> None:
    """An invalidation that gets no reply fails with BackendTimeoutError after about socket_timeout, and works once the server answers."""
    backend = AsyncRedisBackend.from_url(private_redis.url, socket_timeout=0.2)
    try:
        await store(backend, "k", "v", ["t"])
        with private_redis.paused():
            started = time.monotonic()
            with pytest.raises(BackendTimeoutError):
                await backend.invalidate_tags(["t"])
            assert 0.2 <= time.monotonic() - started < 2.0
        await backend.invalidate_tags(["t"])
        assert await backend.get("k", ["t"]) is MISSING
    finally:
        await backend.aclose()


async def test_each_tag_script_run_twice_leaves_nothing_more_valid_than_once(
    backend: AsyncRedisBackend,
) -> None:
    """The retry's premise: a second run of a mark keeps the version to restore, of a commit or an invalidation keeps the entry invalid."""
    await store(backend, "marked", "v", ["a"])
    await backend.mark_pending(["a"], token="writer", ttl=60)
    await backend.mark_pending(["a"], token="writer", ttl=60)
    await backend.clear_pending(["a"], token="writer", committed=False)
    assert "v" == await backend.get("marked", ["a"])  # rolled back: the old version is back

    for name in ("invalidate", "clear_pending"):
        await store(backend, name, "v", [name])
        if name == "clear_pending":
            await backend.mark_pending([name], token="writer", ttl=60)
        await run_tag_script(backend, name, [name])
        await store(backend, name + "-after", "v", [name])  # a fill between the two runs
        await run_tag_script(backend, name, [name])
        assert await backend.get(name, [name]) is MISSING
        assert await backend.get(name + "-after", [name]) is MISSING
        assert {} == (await backend.describe_tag(name)).holders


async def test_a_rollback_run_twice_around_another_writers_commit_restores_nothing(
    backend: AsyncRedisBackend,
) -> None:
    """A rolls back (run twice), B marks and commits between the runs: the entry stays invalid, no version comes back."""
    await store(backend, "k", "v", ["t"])
    await backend.mark_pending(["t"], token="A", ttl=60)
    await backend.clear_pending(["t"], token="A", committed=False)
    assert "v" == await backend.get("k", ["t"])
    await backend.mark_pending(["t"], token="B", ttl=60)
    await backend.clear_pending(["t"], token="B", committed=True)

    await backend.clear_pending(["t"], token="A", committed=False)  # A's second run

    assert await backend.get("k", ["t"]) is MISSING
    assert TagState("t", None) == await backend.describe_tag("t")


async def test_a_mark_run_twice_around_another_writers_commit_then_rolled_back_restores_nothing(
    backend: AsyncRedisBackend,
) -> None:
    """A marks (run twice), B marks and commits between the runs, then A rolls back: B's commit keeps the old version from coming back."""
    await store(backend, "k", "v", ["t"])
    await backend.mark_pending(["t"], token="A", ttl=60)
    await backend.mark_pending(["t"], token="B", ttl=60)
    await backend.clear_pending(["t"], token="B", committed=True)
    await backend.mark_pending(["t"], token="A", ttl=60)  # A's second run

    await backend.clear_pending(["t"], token="A", committed=False)

    assert await backend.get("k", ["t"]) is MISSING
    assert TagState("t", None) == await backend.describe_tag("t")


async def test_marks_run_twice_by_two_writers_that_both_roll_back_restore_the_old_version(
    backend: AsyncRedisBackend,
) -> None:
    """A marks (run twice) with B holding the tag too, and both roll back: nothing committed, so the entry is valid again."""
    await store(backend, "k", "v", ["t"])
    await backend.mark_pending(["t"], token="A", ttl=60)
    await backend.mark_pending(["t"], token="B", ttl=60)
    await backend.mark_pending(["t"], token="A", ttl=60)  # A's second run
    await backend.clear_pending(["t"], token="B", committed=False)
    assert await backend.get("k", ["t"]) is MISSING  # A still holds it

    await backend.clear_pending(["t"], token="A", committed=False)

    assert "v" == await backend.get("k", ["t"])


async def test_close_closes_every_connection(private_redis: RedisServer) -> None:
    """aclose closes every connection the reads opened: the server sees none left, and no socket is left to the finalizers."""
    backend = AsyncRedisBackend.from_url(private_redis.url)
    await store(backend, "k", "v", ["t"])
    async with AsyncNursery() as nursery:
        for _ in range(8):
            nursery.start_soon(backend.get, "k", ["t"])
    assert direct(backend).open_connections >= 1

    await backend.aclose()

    assert 0 == direct(backend).open_connections
    await wait_for_no_clients(private_redis.url)
    gc.collect()  # an unclosed socket would warn here (a ResourceWarning is an error)


async def test_a_read_in_flight_at_close_has_its_connection_closed_when_it_ends(
    private_redis: RedisServer,
) -> None:
    """Closed while a read waits on a stalled server, the pool closes that read's connection once it ends."""
    backend = AsyncRedisBackend.from_url(private_redis.url, socket_timeout=0.3)
    await store(backend, "k", "v", ["t"])
    assert "v" == await backend.get("k", ["t"])
    pool = direct(backend)
    try:
        with private_redis.paused():
            async with AsyncNursery(errors_expected=True) as nursery:
                in_flight = nursery.start_soon(backend.get, "k", ["t"])
                await async_wait_until(lambda: not pool._idle)
                await backend.aclose()
        with pytest.raises(BackendTimeoutError):
            in_flight.result()
        assert 0 == pool.open_connections
    finally:
        await backend.aclose()


async def test_the_pool_reconnects_after_close(backend: AsyncRedisBackend) -> None:
    """A backend read after aclose opens a new connection, as redis-py's pool does."""
    await store(backend, "k", "v", ["t"])
    await backend.aclose()

    assert "v" == await backend.get("k", ["t"])
    assert 1 == direct(backend).open_connections


async def test_clients_the_direct_path_cannot_drive_keep_redis_py(
    redis_url: str, namespace: str
) -> None:
    """RESP3, a subclass and a Sentinel-managed client read through redis-py, and still hit."""

    class Instrumented(redis.asyncio.Redis):
        pass

    sentinel = redis.asyncio.sentinel.Sentinel([("127.0.0.1", 1)])
    clients = [
        redis.asyncio.Redis.from_url(redis_url, protocol=3),
        Instrumented.from_url(redis_url),
        sentinel.master_for("mymaster"),
    ]
    for client in clients:
        backend = AsyncRedisBackend(client, namespace=namespace)
        assert backend._direct is None
    plain = AsyncRedisBackend(clients[0], namespace=namespace)
    await store(plain, "k", "v", ["t"])
    assert "v" == await plain.get("k", ["t"])
    assert "v" == await plain.get("k")
    for client in clients:
        await client.aclose()
    assert AsyncRedisBackend.from_url(redis_url, namespace=namespace)._direct is not None
