"""Calling a user's loader from async and from sync code."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any


async def async_invoke(function: Callable[..., Any], *args: Any) -> Any:
    """Call ``function``; await what it returns when that is awaitable (an async function)."""
    result = function(*args)
    if inspect.isawaitable(result):
        return await result
    return result


def invoke(function: Callable[..., Any], *args: Any) -> Any:
    return function(*args)
