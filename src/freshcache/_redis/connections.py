"""One redis-py connection driven directly: send the packed command, read one reply with hiredis.

redis-py's ``execute_command`` costs several times the round trip's own CPU: in the asyncio
client a Task per send (``asyncio.wait_for`` around it), a timeout context per read, a
pool checkout under a lock, the retry and command wrappers. The hit path keeps
redis-py's connection (it connected, authenticated, negotiated TLS and RESP, selected the
database) and does the rest itself: write the bytes, read until hiredis has a reply.

The classes come in pairs that ``scripts/unasync.py`` maps onto each other, as in
``freshcache._synchronization``: ``AsyncDirectConnection`` on asyncio's streams,
``DirectConnection`` on the blocking socket. What each must keep from the wrappers it
skips:

- a read timeout: the sync socket has redis-py's ``socket_timeout`` set on it; in asyncio
  one timer per pool (:class:`AsyncReadDeadlines`) fails the reads past their deadline,
  instead of a timer per read;
- a connection that may hold an unread reply is never used again: any failure, a
  timeout or a cancellation included, closes it (the pool's business);
- a connection belongs to the event loop it was opened in: a call from another loop is
  refused (:class:`OtherEventLoop`) before anything is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from time import monotonic
from typing import Any

import hiredis
import redis.asyncio.connection
import redis.connection
import redis.exceptions

READ_SIZE = 65_536
# What hiredis returns while a reply is incomplete (False and None are replies of their own).
NOT_ENOUGH = object()


def reply_reader() -> hiredis.Reader:
    """A RESP reader whose error replies are ResponseError objects, returned rather than raised."""
    return hiredis.Reader(
        protocolError=redis.exceptions.InvalidResponse,
        replyError=redis.exceptions.ResponseError,
        notEnoughData=NOT_ENOUGH,
    )


def pack(*arguments: bytes) -> bytes:
    """One command in RESP: an array of bulk strings."""
    parts = [b"*%d\r\n" % len(arguments)]
    for argument in arguments:
        parts.append(b"$%d\r\n%b\r\n" % (len(argument), argument))
    return b"".join(parts)


def pack_text(command: str, arguments: list[str]) -> bytes:
    """``command`` and ``arguments`` in RESP, formatted as text and encoded once (the common case)."""
    parts = [f"*{len(arguments) + 1}\r\n${len(command)}\r\n{command}\r\n"]
    for argument in arguments:
        parts.append(f"${len(argument)}\r\n{argument}\r\n")
    text = "".join(parts)
    if text.isascii():  # then a length in characters is the length in bytes
        return text.encode()
    return pack(command.encode(), *[argument.encode() for argument in arguments])


def is_dropped(exc: BaseException) -> bool:
    """Did the connection drop (closed, reset, refused) rather than time out or fail otherwise?"""
    if isinstance(exc, (TimeoutError, redis.exceptions.TimeoutError)):
        return False
    return isinstance(exc, (OSError, redis.exceptions.ConnectionError))


class OtherEventLoop(RuntimeError):
    """A call from another event loop than the connections': nothing was sent."""


class AsyncReadDeadlines:
    """The read timeout of one pool's connections, watched by one timer rather than one per read.

    ``asyncio.wait_for`` or ``asyncio.timeout`` around each read schedules and cancels a
    timer per call, about a tenth of a hit's CPU. Here a read stamps its deadline on its
    connection, and one timer, armed while reads are in flight, wakes at the earliest
    deadline: a read past its own fails with redis-py's TimeoutError (its connection is
    then closed), the others are left to run and the timer is armed for the next one.
    A read fails between its timeout and the next wake of the loop after it, as with
    a timer of its own.
    """

    __slots__ = ("connections", "loop", "seconds", "timer")

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        # Every open connection of the pool, busy or idle; the pool adds and removes them.
        self.connections: set[AsyncDirectConnection] = set()
        # The loop the connections belong to, from the first one opened until none is left.
        self.loop: asyncio.AbstractEventLoop | None = None
        self.timer: asyncio.TimerHandle | None = None

    def bind(self) -> None:
        """Before a connection is opened: the pool's loop is the running one, or refuse."""
        loop = asyncio.get_running_loop()
        if not self.connections:
            self.loop = loop
            self.timer = None  # a timer left in another, finished loop never fires
        elif loop is not self.loop:
            raise OtherEventLoop("the Redis connections are attached to a different event loop")

    def arm(self, deadline: float) -> None:
        assert self.loop is not None
        self.timer = self.loop.call_later(deadline - monotonic(), self._check)

    def _check(self) -> None:
        self.timer = None
        now = monotonic()
        earliest = 0.0
        for connection in list(self.connections):
            deadline = connection.deadline
            if not deadline:
                continue
            if deadline <= now:
                connection.expire()
            elif not earliest or deadline < earliest:
                earliest = deadline
        if earliest:
            self.arm(earliest)

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class ReadDeadlines:
    """The sync twin: each socket has redis-py's socket_timeout on it, so nothing to watch."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds

    def bind(self) -> None:
        return None

    def cancel(self) -> None:
        return None


class AsyncDirectConnection:
    """A connected redis-py asyncio connection, written to and read from directly."""

    __slots__ = ("_deadlines", "_reader", "_replies", "_writer", "connection", "deadline")

    def __init__(
        self, connection: redis.asyncio.connection.AbstractConnection, deadlines: AsyncReadDeadlines
    ) -> None:
        self.connection = connection
        self._reader: asyncio.StreamReader = connection._reader  # type: ignore[assignment]
        self._writer: asyncio.StreamWriter = connection._writer  # type: ignore[assignment]
        self._replies = reply_reader()
        self._deadlines = deadlines
        self.deadline = 0.0  # while a read is in flight, when it times out (monotonic)
        deadlines.connections.add(self)

    async def request(self, packed: bytes) -> Any:
        """Send one packed command and return its reply (an error reply is returned, not raised)."""
        deadlines = self._deadlines
        if asyncio.get_running_loop() is not deadlines.loop:
            raise OtherEventLoop("the Redis connections are attached to a different event loop")
        if deadlines.seconds is not None:
            self.deadline = deadline = monotonic() + deadlines.seconds
            if deadlines.timer is None:
                deadlines.arm(deadline)
        self._writer.write(packed)
        replies = self._replies
        reply = replies.gets()
        while reply is NOT_ENOUGH:
            data = await self._reader.read(READ_SIZE)
            if not data:
                raise redis.exceptions.ConnectionError("Connection closed by server.")
            replies.feed(data)
            reply = replies.gets()
        self.deadline = 0.0
        return reply

    def expire(self) -> None:
        """Fail the read in flight with a timeout: its reply may still come, so it is closed after."""
        self.deadline = 0.0
        self._reader.set_exception(
            redis.exceptions.TimeoutError(f"Timeout reading from {self.connection._host_error()}")
        )

    def close_now(self) -> None:
        """Close without waiting (after a failure, or on a cancellation)."""
        self._deadlines.connections.discard(self)
        # Connections are used only in their own loop, which runs now; should it be
        # closed after all, the transport's finalizer closes the socket.
        with contextlib.suppress(RuntimeError):
            self._writer.close()
        # As redis-py's own close does: the connection holds no stream, so it is closed.
        self.connection._reader = self.connection._writer = None

    async def aclose(self) -> None:
        self._deadlines.connections.discard(self)
        await self.connection.disconnect()

    def abandon(self) -> None:
        """In a forked child: leave the parent's connection alone.

        Its transport belongs to the parent's event loop, whose epoll the child shares:
        closing it here would unregister the parent's socket. The pool keeps the object
        alive, so that no finalizer closes it either.
        """


class DirectConnection:
    """A connected redis-py connection, its socket written to and read from directly."""

    __slots__ = ("_replies", "_socket", "connection")

    def __init__(
        self, connection: redis.connection.AbstractConnection, deadlines: ReadDeadlines
    ) -> None:
        self.connection = connection
        self._socket: socket.socket = connection._sock  # type: ignore[assignment]  # its timeout is redis-py's socket_timeout
        self._replies = reply_reader()

    def request(self, packed: bytes) -> Any:
        """Send one packed command and return its reply (an error reply is returned, not raised)."""
        sock = self._socket
        sock.sendall(packed)
        replies = self._replies
        reply = replies.gets()
        while reply is NOT_ENOUGH:
            data = sock.recv(READ_SIZE)
            if not data:
                raise redis.exceptions.ConnectionError("Connection closed by server.")
            replies.feed(data)
            reply = replies.gets()
        return reply

    def close_now(self) -> None:
        """Close the socket; after a fork, only this process's copy (redis-py checks the pid)."""
        self.connection.disconnect()  # type: ignore[no-untyped-call]

    def close(self) -> None:
        self.connection.disconnect()  # type: ignore[no-untyped-call]

    def abandon(self) -> None:
        """In a forked child: close this process's copy of the parent's socket, nothing more.

        redis-py shuts a socket down (which the parent would feel) only in the process
        that opened it; elsewhere it only closes the descriptor.
        """
        self.connection.disconnect()  # type: ignore[no-untyped-call]
