"""Concurrency for tests written once: tasks for the async tests, threads for the sync ones.

Like ``freshcache._synchronization``, each name comes in a pair that unasync maps onto
each other (``AsyncNursery`` -> ``Nursery``, ``async_wait_until`` -> ``wait_until``), so a
race test under ``tests/_async/`` runs as tasks there and as threads in ``tests/_sync/``.
Tests wait on events and conditions, never on a length of time.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from freshcache._synchronization import AsyncEvent, Event

__all__ = [
    "TIMEOUT",
    "AsyncEvent",
    "AsyncNursery",
    "Event",
    "Nursery",
    "async_current_name",
    "async_pause",
    "async_wait_until",
    "current_name",
    "pause",
    "wait_until",
]

TIMEOUT = 10.0  # seconds before a test that waits gives up and fails, rather than hang


class AsyncSpawned:
    """A call running as a task; ``result()`` once the nursery has closed."""

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self._task = task

    def result(self) -> Any:
        return self._task.result()

    async def join(self) -> Any:
        return await asyncio.wait_for(asyncio.shield(self._task), TIMEOUT)


class Spawned:
    """A call running on a thread; ``result()`` once the nursery has closed."""

    def __init__(
        self, call: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        self._call, self._args, self._kwargs = call, args, kwargs
        self._value: Any = None
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self._value = self._call(*self._args, **self._kwargs)
        except BaseException as exc:
            self._error = exc

    def result(self) -> Any:
        assert not self.thread.is_alive(), "still running"
        if self._error is not None:
            raise self._error
        return self._value

    def join(self) -> Any:
        self.thread.join(TIMEOUT)
        return self.result()


class AsyncNursery:
    """``start_soon`` runs calls as tasks; leaving the block waits for every one of them.

    Then the first error of a call is raised, unless ``errors_expected``: a test that
    expects failures reads each one from ``result()``.
    """

    def __init__(self, *, errors_expected: bool = False) -> None:
        self._spawned: list[asyncio.Task[Any]] = []
        self._errors_expected = errors_expected

    async def __aenter__(self) -> AsyncNursery:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._spawned:
            await asyncio.wait(self._spawned, timeout=TIMEOUT)
        for task in self._spawned:
            if not task.done():
                task.cancel()
                raise AssertionError(f"{task.get_name()} did not finish in {TIMEOUT} s")
        if not self._errors_expected:
            for task in self._spawned:
                task.result()

    def start_soon(
        self, call: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any
    ) -> AsyncSpawned:
        task = asyncio.ensure_future(call(*args, **kwargs))
        self._spawned.append(task)
        return AsyncSpawned(task)


class Nursery:
    """``start_soon`` runs calls on threads; leaving the block joins every one of them.

    Then the first error of a call is raised, unless ``errors_expected``: a test that
    expects failures reads each one from ``result()``.
    """

    def __init__(self, *, errors_expected: bool = False) -> None:
        self._spawned: list[Spawned] = []
        self._errors_expected = errors_expected

    def __enter__(self) -> Nursery:
        return self

    def __exit__(self, *exc: object) -> None:
        deadline = time.monotonic() + TIMEOUT
        for spawned in self._spawned:
            spawned.thread.join(max(0.0, deadline - time.monotonic()))
            if spawned.thread.is_alive():
                raise AssertionError(f"{spawned.thread.name} did not finish in {TIMEOUT} s")
        if not self._errors_expected:
            for spawned in self._spawned:
                spawned.result()

    def start_soon(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Spawned:
        spawned = Spawned(call, args, kwargs)
        self._spawned.append(spawned)
        spawned.thread.start()
        return spawned


async def async_wait_until(condition: Callable[[], bool]) -> None:
    """Return as soon as ``condition()`` holds: the other tasks run until it does.

    For states the code under test reaches without a hook to signal them (a caller now
    waiting on a load, say): the test proceeds the moment the state is reached, never
    after a guessed delay; it fails after TIMEOUT seconds if the state never comes.
    """
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0)  # yield to the other tasks; no time is waited


def wait_until(condition: Callable[[], bool]) -> None:
    """Return as soon as ``condition()`` holds: the other threads run until it does."""
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.0001)  # give up the GIL to the other threads


async def async_pause() -> None:
    """Let the other tasks run (a yield: no time is waited)."""
    await asyncio.sleep(0)


def pause() -> None:
    """Let the other threads run (a yield: no time is waited)."""
    time.sleep(0)


def async_current_name() -> str:
    """The running task's name: tells the callers apart."""
    task = asyncio.current_task()
    assert task is not None, "not in a task"
    return task.get_name()


def current_name() -> str:
    """The running thread's name: tells the callers apart."""
    return threading.current_thread().name
