"""Calling a user's loader from async and from sync code."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any


async def async_invoke(loader: Callable[[], Any]) -> Any:
    """Call ``loader``; await what it returns when that is awaitable (an async loader)."""
    result = loader()
    if inspect.isawaitable(result):
        return await result
    return result


def invoke(loader: Callable[[], Any]) -> Any:
    return loader()
