"""The Redis backend's direct path: redis-py's connections, held in a pool of its own and driven directly.

A hit through redis-py's ``execute_command`` spends most of its CPU in the client's
wrappers, not in the round trip (see ``docs/benchmarks.md``). The commands that may be
sent twice go through :class:`AsyncDirectPool` instead: the reads (the hit's MGET, the
GET_ENTRIES script) and the tag scripts (invalidate, mark and clear pending marks,
each of which only ever leaves an entry less valid when run again):
redis-py still opens every connection (address, AUTH, TLS, RESP, database, client
name, all from the client's own pool settings), and the pool then sends packed commands
on them and reads the replies with hiredis (``freshcache._redis.connections``).

What the pool keeps of redis-py's guarantees, and how:

- **bounded**: at most ``max_connections`` open; past that a read waits for one to come
  back, at most the socket timeout, then fails with a timeout;
- **a read timeout**: redis-py's ``socket_timeout``, on the socket (sync) or watched by
  one timer per pool (asyncio);
- **never a stale reply**: a connection on which anything went wrong (a timeout, a
  drop, a cancellation, an error from Python) is closed, never reused;
- **one retry on a dropped connection**, on a new connection, since every command sent
  here may be sent twice; a timeout is not retried (a stalled server
  would cost every read two timeouts), nor a failure to connect;
- **fork safety**: a forked child leaves the parent's connections alone and opens its
  own (see ``freshcache._forks``);
- **clean close**: ``aclose`` closes the idle connections at once and the busy ones as
  they come back; the pool stays usable after it, reconnecting, as redis-py's does.

A client the pool does not know how to drive (Sentinel, Cluster, a subclass, RESP3,
client-side caching, streaming credentials, no hiredis) gets no direct pool: these
commands go through redis-py as every other command does.
"""

from __future__ import annotations

from time import monotonic
from typing import Any

import redis.asyncio
import redis.asyncio.connection
import redis.exceptions

from freshcache import _forks
from freshcache._redis.connections import (
    AsyncDirectConnection,
    AsyncReadDeadlines,
    OtherEventLoop,
    is_dropped,
)
from freshcache._synchronization import AsyncCondition, AsyncCriticalSection

_POOLS = (redis.asyncio.ConnectionPool, redis.asyncio.BlockingConnectionPool)
_CONNECTIONS = (
    redis.asyncio.connection.Connection,
    redis.asyncio.connection.SSLConnection,
    redis.asyncio.connection.UnixDomainSocketConnection,
)
ResponseError = redis.exceptions.ResponseError


def async_direct_pool(client: Any, *, retry: bool) -> AsyncDirectPool | None:
    """A direct pool on ``client``'s settings, or None when its commands must stay with redis-py."""
    if client.__class__ is not redis.asyncio.Redis:
        return None  # a Cluster, or a subclass that may change what a command does
    pool = client.connection_pool
    if pool.__class__ not in _POOLS or pool.connection_class not in _CONNECTIONS:
        return None  # Sentinel's pool and connections find their server themselves
    settings = pool.connection_kwargs
    if (
        settings.get("protocol") not in (None, 2, "2")  # RESP3 may push between replies
        or settings.get("decode_responses")
        or settings.get("credential_provider") is not None  # may re-authenticate live
        or getattr(pool, "cache", None) is not None  # client-side caching tracks keys
    ):
        return None
    return AsyncDirectPool(pool, max_connections=pool.max_connections, retry=retry)


class AsyncDirectPool:
    """Connections opened by redis-py on ``pool``'s settings, held here and driven directly."""

    def __init__(
        self,
        pool: redis.asyncio.ConnectionPool,
        *,
        max_connections: int,
        retry: bool,
    ) -> None:
        self._pool = pool  # only its settings: its own connections are not touched
        self.max_connections = max_connections
        self.retry = retry
        self._timeout: float | None = pool.connection_kwargs.get("socket_timeout")
        self._reset()
        self._abandoned: list[AsyncDirectConnection] = []

    def _reset(self) -> None:
        self._generation = _forks.generation
        self._deadlines = AsyncReadDeadlines(self._timeout)
        self._idle: list[AsyncDirectConnection] = []
        self._open = 0  # connections open or opening, idle or busy
        self._waiting = 0  # reads waiting for a connection to come back
        self._closing = False  # closed while reads were in flight: close theirs on return
        self._counting = AsyncCriticalSection()  # guards _open (threads share the sync pool)
        self._returned = AsyncCondition()

    @property
    def open_connections(self) -> int:
        return self._open

    async def call(self, packed: bytes) -> Any:
        """The reply to ``packed``, a command that may be sent twice.

        An error reply is raised as redis-py's ResponseError, a failure as redis-py's
        ConnectionError or TimeoutError (the backend maps both).
        """
        if self._generation != _forks.generation:
            self._after_fork()
        retried = False
        while True:
            try:
                connection = self._idle.pop()
            except IndexError:
                connection = await self._take()
            try:
                reply = await connection.request(packed)
                break
            except BaseException as exc:
                if exc.__class__ is OtherEventLoop:
                    self._idle.append(connection)  # refused before anything was sent
                    raise
                self._discard(connection)
                if self._waiting:
                    await self._wake()
                if retried or not self.retry or not is_dropped(exc):
                    raise
                # A dropped connection most often means all of them dropped (a restart, a
                # failover): the retry goes on a new one, and the idle ones are closed.
                retried = True
                self._discard_idle()
        self._idle.append(connection)
        if self._waiting or self._closing:
            await self._returned_one()
        if reply.__class__ is ResponseError:
            raise reply
        return reply

    async def _take(self) -> AsyncDirectConnection:
        """A connection when none is idle: a new one under the bound, else one that comes back."""
        with self._counting:
            opening = self._open < self.max_connections
            if opening:
                self._open += 1
        if opening:
            return await self._connect()
        deadline = None if self._timeout is None else monotonic() + self._timeout
        async with self._returned:
            self._waiting += 1
            try:
                while True:
                    try:
                        return self._idle.pop()
                    except IndexError:
                        pass
                    with self._counting:
                        opening = self._open < self.max_connections  # one was closed
                        if opening:
                            self._open += 1
                    if opening:
                        break
                    left = None if deadline is None else deadline - monotonic()
                    if (left is not None and left <= 0) or not await self._returned.wait(left):
                        raise redis.exceptions.TimeoutError(
                            f"all {self.max_connections} Redis connections stayed busy for "
                            f"{self._timeout} s"
                        )
            finally:
                self._waiting -= 1
        return await self._connect()

    async def _connect(self) -> AsyncDirectConnection:
        """Open a connection with redis-py (counted in _open already)."""
        connection = None
        try:
            self._deadlines.bind()
            pool = self._pool
            connection = pool.connection_class(**pool.connection_kwargs)
            await connection.connect()  # type: ignore[no-untyped-call, unused-ignore]
            return AsyncDirectConnection(connection, self._deadlines)
        except BaseException:
            with self._counting:
                self._open -= 1
            if connection is not None:
                await connection.disconnect()  # type: ignore[no-untyped-call, unused-ignore]
            raise

    def _discard(self, connection: AsyncDirectConnection) -> None:
        connection.close_now()
        with self._counting:
            self._open -= 1
            if not self._open:
                self._closing = False

    def _discard_idle(self) -> None:
        idle = self._idle
        while idle:  # popped one by one: threads may give connections back meanwhile
            try:
                connection = idle.pop()
            except IndexError:
                break
            self._discard(connection)

    async def _wake(self) -> None:
        async with self._returned:
            self._returned.notify()

    async def _returned_one(self) -> None:
        if self._closing:
            self._discard_idle()
            if not self._open:
                self._closing = False
        if self._waiting:
            await self._wake()

    def _after_fork(self) -> None:
        """In a forked child: forget the parent's connections; this process opens its own."""
        for connection in self._idle:
            connection.abandon()
            self._abandoned.append(connection)
        self._reset()

    async def aclose(self) -> None:
        """Close the idle connections, and the busy ones when their reads end."""
        if self._generation != _forks.generation:
            self._after_fork()
        idle = self._idle
        while idle:
            try:
                connection = idle.pop()
            except IndexError:
                break
            with self._counting:
                self._open -= 1
            await connection.aclose()
        self._closing = self._open > 0
        if not self._closing:
            self._deadlines.cancel()  # reads in flight keep their timer
        if self._waiting:
            async with self._returned:
                self._returned.notify_all()
