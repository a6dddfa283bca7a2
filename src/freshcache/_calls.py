"""Calling user code from async and from sync code: loaders, decorated functions, callbacks.

Pairs, so that unasync maps one onto the other: ``async_x`` serves ``_async/`` and ``x``
serves the generated ``_sync/`` code.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable, Coroutine
from types import AsyncGeneratorType, GeneratorType
from typing import Any

from freshcache._exceptions import ConfigurationError

# Results a cache must not store: one caller would consume what every later hit gets.
_SINGLE_USE = (GeneratorType, AsyncGeneratorType)


async def async_invoke(function: Callable[..., Any], *args: Any) -> Any:
    """Call ``function``; await what it returns when that is awaitable (an async function)."""
    result = function(*args)
    if inspect.isawaitable(result):
        return await result
    return result


def invoke(function: Callable[..., Any], *args: Any) -> Any:
    return function(*args)


async def async_load(loader: Callable[[], Any]) -> Any:
    """``loader()``'s result, awaited when it is awaitable; a generator is refused."""
    result = loader()
    if inspect.isawaitable(result):
        result = await result
    if isinstance(result, _SINGLE_USE):
        raise ConfigurationError(_single_use(loader, result))
    return result


def load(loader: Callable[[], Any]) -> Any:
    """``loader()``'s result; an awaitable or a generator is refused (never cached)."""
    result = loader()
    if inspect.isawaitable(result):
        if isinstance(result, Coroutine):
            result.close()  # never awaited on purpose: no "was never awaited" warning
        raise ConfigurationError(
            f"loader {_name(loader)} returned {type(result).__name__}: Cache calls loaders "
            "synchronously and would cache the awaitable itself; use AsyncCache for async loaders"
        )
    if isinstance(result, _SINGLE_USE):
        raise ConfigurationError(_single_use(loader, result))
    return result


def async_check_loader(loader: object) -> None:
    """AsyncCache takes a sync or an async loader: only ``callable`` is required."""
    if not callable(loader):
        raise ConfigurationError(f"loader must be callable, not {type(loader).__name__}")


def check_loader(loader: object) -> None:
    """Cache takes a sync loader; an ``async def`` is refused before anything is read."""
    if not callable(loader):
        raise ConfigurationError(f"loader must be callable, not {type(loader).__name__}")
    if is_async_function(loader):
        raise ConfigurationError(
            f"loader {_name(loader)} is an async function; Cache calls loaders synchronously "
            "and would cache the coroutine: use AsyncCache for async loaders"
        )


def async_check_decorated(function: object, where: str) -> None:
    """AsyncCache.cached wraps an ``async def``: a plain function would change kind under it."""
    if not callable(function):
        raise ConfigurationError(f"{where} decorates a function, not {type(function).__name__}")
    if not is_async_function(function) or inspect.isasyncgenfunction(function):
        raise ConfigurationError(
            f"{where} on {_name(function)}: AsyncCache.cached wraps an async def (its wrapper "
            "is awaited); decorate a plain function with Cache.cached, or make it async"
        )


def check_decorated(function: object, where: str) -> None:
    """Cache.cached wraps a plain function: an async one would have its coroutine cached."""
    if not callable(function):
        raise ConfigurationError(f"{where} decorates a function, not {type(function).__name__}")
    if is_async_function(function) or inspect.isasyncgenfunction(function):
        raise ConfigurationError(
            f"{where} on {_name(function)}: Cache.cached would cache the coroutine, not its "
            "result; decorate async functions with AsyncCache.cached"
        )
    if inspect.isgeneratorfunction(function):
        raise ConfigurationError(
            f"{where} on {_name(function)}: a generator can be consumed once, not cached"
        )


def is_async_function(function: object) -> bool:
    """An ``async def``, a partial of one, or an object whose ``__call__`` is one."""
    call = inspect.getattr_static(type(function), "__call__", None)
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(call)


def _single_use(loader: Callable[[], Any], result: object) -> str:
    return (
        f"loader {_name(loader)} returned a {type(result).__name__}, which can be consumed "
        "once: return a list (or another value) to cache"
    )


def _name(function: object) -> str:
    return str(getattr(function, "__qualname__", None) or repr(function))


class AsyncBackgroundCalls:
    """Calls that must not hold up the caller that starts them, nor die with its cancellation.

    A task cancelled by a request timeout has no time left for a round trip (the server
    may be the thing that stalled), yet the lease it may hold must still be released: the
    release runs as a task of its own. ``wait`` lets ``aclose`` see them finish.
    """

    __slots__ = ("_tasks",)

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, call: Callable[[], Coroutine[Any, Any, None]]) -> None:
        task = asyncio.get_running_loop().create_task(call())
        self._tasks.add(task)  # a strong reference: the loop keeps only weak ones
        task.add_done_callback(self._tasks.discard)

    async def wait(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


class BackgroundCalls:
    """The same for threads: each call on a daemon thread of its own (they are rare)."""

    __slots__ = ("_lock", "_threads")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self, call: Callable[[], None]) -> None:
        thread = threading.Thread(target=call, name="freshcache-background", daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def wait(self) -> None:
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join()
