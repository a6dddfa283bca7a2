"""Sync and async parts do not mix: a constructor refuses a collaborator of the other kind.

A sync manager handed an ``AsyncCache`` would call its coroutine methods without
awaiting them, and report success for invalidations that never happen. So every class
that takes a cache, a manager, an engine or a session factory checks it at construction.
The async code states the async kind (``require_kind(cache, AsyncCache,
"AsyncInvalidationManager")``) and unasync turns the call into the sync check.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from freshcache._exceptions import ConfigurationError


def require_kind(value: object, expected: type | tuple[type, ...], owner: str) -> None:
    """Raise ConfigurationError unless ``value`` is an ``expected``, naming both kinds.

    ``owner`` is the class asking; when it is one name (``InvalidationManager``) the
    message also names its twin of the other kind, which takes the value given.
    """
    if isinstance(value, expected):
        return
    wanted = expected if isinstance(expected, tuple) else (expected,)
    given = type(value)
    # redis.Redis and redis.asyncio.Redis share a name: then modules tell the classes apart.
    clash = any(each.__name__ == given.__name__ for each in wanted)
    given_name = _name(given, clash)
    names = " or ".join(_article(_name(each, clash)) for each in wanted)
    message = f"{owner} needs {names}, not {_article(given_name)}"
    kinds = {_is_async(each) for each in wanted}
    if kinds == {not _is_async(given)} and owner.isidentifier():
        message += f": use {_twin(owner)} with {_article(given_name)}"
    raise ConfigurationError(message)


def _is_async(cls: type) -> bool:
    return any(
        each.__name__.startswith(("Async", "async_"))
        or ".asyncio" in each.__module__
        or "._async" in each.__module__
        for each in cls.__mro__
    )


def _twin(name: str) -> str:
    return name.removeprefix("Async") if name.startswith("Async") else f"Async{name}"


def _name(cls: type, qualified: bool) -> str:
    return f"{cls.__module__}.{cls.__qualname__}" if qualified else cls.__name__


def _article(name: str) -> str:
    return f"{'an' if name[0].lower() in 'aeiou' else 'a'} {name}"


def async_require_method_kind(method: Callable[..., Any], what: str, owner: str) -> None:
    """``method`` (of a duck-typed collaborator, such as a failure sink) must be async."""
    if not inspect.iscoroutinefunction(method):
        raise ConfigurationError(
            f"{owner} needs {what} to be a coroutine function, not the plain {_qualname(method)}: "
            f"use {_twin(owner)} with it"
        )


def require_method_kind(method: Callable[..., Any], what: str, owner: str) -> None:
    """``method`` must be plain: the sync code would drop the coroutine an async one returns."""
    if inspect.iscoroutinefunction(method):
        raise ConfigurationError(
            f"{owner} needs {what} to be a plain method, not the coroutine function "
            f"{_qualname(method)}: use {_twin(owner)} with it"
        )


def _qualname(method: Callable[..., Any]) -> str:
    return getattr(method, "__qualname__", repr(method))
