"""Synchronization primitives in pairs, so that unasync can map one onto the other.

``AsyncX`` serves the asyncio code under ``_async/``; the plain ``X`` serves the generated
code under ``_sync/``, where callers are threads.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TypeVar

A = TypeVar("A")
B = TypeVar("B")
R = TypeVar("R")


class AsyncCriticalSection:
    """A section with no ``await`` inside needs no lock on one event loop: a no-op."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None

    def around(self, function: Callable[[A, B], R]) -> Callable[[A, B], R]:
        """``function`` as a whole section: itself, since nothing else runs until it returns."""
        return function


class CriticalSection:
    """Threads share the sync backends: a real lock."""

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()

    def around(self, function: Callable[[A, B], R]) -> Callable[[A, B], R]:
        """``function`` as a whole section: called under the lock.

        The lock's own ``acquire`` and ``release``, bound once, run in C, where ``with self``
        would run this class's ``__enter__`` and ``__exit__`` in Python on every call.
        """
        acquire, release = self._lock.acquire, self._lock.release

        def locked(first: A, second: B) -> R:
            acquire()
            try:
                return function(first, second)
            finally:
                release()

        return locked


class AsyncEvent:
    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait until set; False if ``timeout`` seconds passed first."""
        if timeout is None:
            await self._event.wait()
            return True
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True


class Event:
    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)


class AsyncLock:
    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> None:
        await self._lock.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._lock.release()


class Lock:
    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._lock.release()


class AsyncCondition:
    """A condition to wait on, at most ``timeout`` seconds, under its own lock."""

    __slots__ = ("_condition",)

    def __init__(self) -> None:
        self._condition = asyncio.Condition()

    async def __aenter__(self) -> None:
        await self._condition.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._condition.release()

    async def wait(self, timeout: float | None) -> bool:
        """Wait (the lock held) for a notify; False if ``timeout`` seconds passed first."""
        try:
            await asyncio.wait_for(self._condition.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    def notify(self) -> None:
        self._condition.notify()

    def notify_all(self) -> None:
        self._condition.notify_all()


class Condition:
    __slots__ = ("_condition",)

    def __init__(self) -> None:
        self._condition = threading.Condition()

    def __enter__(self) -> None:
        self._condition.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._condition.release()

    def wait(self, timeout: float | None) -> bool:
        return self._condition.wait(timeout)

    def notify(self) -> None:
        self._condition.notify()

    def notify_all(self) -> None:
        self._condition.notify_all()


async def async_sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


def sleep(seconds: float) -> None:
    time.sleep(seconds)


class AsyncBackgroundTask:
    """Runs ``target`` as a task on the running loop. The caller decides when one is needed."""

    def __init__(self, target: Callable[[], Awaitable[None]], name: str) -> None:
        self._target = target
        self._name = name
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self._name)

    async def _run(self) -> None:
        await self._target()

    async def join(self, timeout: float) -> None:
        if self._task is not None and not self._task.done():
            await asyncio.wait({self._task}, timeout=timeout)


class BackgroundTask:
    """Runs ``target`` on a daemon thread. The caller decides when one is needed."""

    def __init__(self, target: Callable[[], None], name: str) -> None:
        self._target = target
        self._name = name
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._target, name=self._name, daemon=True)
        self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
