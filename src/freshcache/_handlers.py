"""Calling event handlers from the async bus and from the sync one.

The async bus awaits a coroutine handler under a timeout and calls a plain function
directly (it runs on the loop, so it should be quick). The sync bus calls handlers in the
thread that delivers the event and refuses coroutine functions when they subscribe:
there is no loop to run them on, and ``asyncio.run`` inside a sync call is not an answer.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
from collections.abc import Callable
from typing import Any

from ._calls import is_async_function
from ._exceptions import ConfigurationError

Handler = Callable[[Any], Any]


class HandlerTimeout(Exception):
    """A coroutine handler ran past the bus's ``handler_timeout``: it was cancelled."""


def async_check_handler(handler: Handler) -> Handler:
    if not callable(handler):
        raise ConfigurationError(f"a handler must be callable, not {handler!r}")
    return handler


def check_handler(handler: Handler) -> Handler:
    if not callable(handler):
        raise ConfigurationError(f"a handler must be callable, not {handler!r}")
    if is_async_function(handler):
        raise ConfigurationError(
            f"{handler!r} is a coroutine function: the sync EventBus cannot await it; "
            "subscribe it on an AsyncEventBus, or subscribe a plain function"
        )
    return handler


async def async_call_handler(handler: Handler, event: Any, timeout: float) -> None:
    result = handler(event)
    if not inspect.isawaitable(result):
        return
    try:
        if sys.version_info >= (3, 11):
            # A timer on the running task: wait_for's task per call cost 20 µs a handler.
            async with asyncio.timeout(timeout):
                await result
        else:  # pragma: no cover - Python 3.10
            await asyncio.wait_for(result, timeout)
    except asyncio.TimeoutError:
        raise HandlerTimeout(f"took longer than {timeout} s and was cancelled") from None


def call_handler(handler: Handler, event: Any, timeout: float) -> None:
    result = handler(event)
    if inspect.isawaitable(result):
        close = getattr(result, "close", None)
        if close is not None:
            close()  # no "never awaited" warning: the error below says what went wrong
        raise ConfigurationError(
            f"{handler!r} returned an awaitable: the sync EventBus cannot await it"
        )
