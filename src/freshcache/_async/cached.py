"""The ``cached`` decorator: a function's results cached under keys and tags filled from its arguments."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar, cast

from freshcache._calls import async_check_decorated
from freshcache._durations import Seconds, seconds
from freshcache._exceptions import ConfigurationError, InvalidKeyError
from freshcache._keys import Template

if TYPE_CHECKING:
    from freshcache._async.cache import AsyncCache

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
P = ParamSpec("P")


class AsyncCachedFunction(Protocol[P, T_co]):
    """What :meth:`AsyncCache.cached` returns: the function, cached, with its key and invalidation."""

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> T_co: ...

    def key_for(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The cache key of the call with these arguments."""
        ...

    async def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> int:
        """Delete the entry of the call with these arguments; 1 if it existed."""
        ...


def decorator(
    cache: AsyncCache,
    *,
    key: str,
    tags: Iterable[str],
    ttl: Seconds | None,
    cache_none: bool | None,
) -> Callable[[Callable[P, Awaitable[T]]], AsyncCachedFunction[P, T]]:
    """The decorator :meth:`AsyncCache.cached` returns; its arguments are checked here, before any use."""
    key_template = Template(key, kind="key")
    if isinstance(tags, str):
        raise InvalidKeyError(f"tags must be a list of strings, not the string {tags!r}")
    tag_templates = [Template(tag, kind="tag") for tag in tags]
    seconds_to_live = None if ttl is None else seconds("ttl", ttl)
    if cache_none is not None and not isinstance(cache_none, bool):
        raise ConfigurationError(f"cache_none must be True, False or None, not {cache_none!r}")

    def decorate(function: Callable[P, Awaitable[T]]) -> AsyncCachedFunction[P, T]:
        async_check_decorated(function, f"cached(key={key!r})")
        signature = inspect.signature(function)
        wanted = {*key_template.fields, *(f for t in tag_templates for f in t.fields)}
        unknown = wanted.difference(signature.parameters)
        if unknown:
            raise ConfigurationError(
                f"cached({key!r}) on {function.__qualname__}: the templates name "
                f"{', '.join(sorted(unknown))}, which are not parameters of the function"
            )

        def arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            return bound.arguments

        def key_for(*args: P.args, **kwargs: P.kwargs) -> str:
            return key_template.format(arguments(args, kwargs))

        @functools.wraps(function)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            values = arguments(args, kwargs)
            return await cache.get_or_load(
                key_template.format(values),
                lambda: function(*args, **kwargs),
                tags=[template.format(values) for template in tag_templates],
                ttl=seconds_to_live,
                cache_none=cache_none,
            )

        async def invalidate(*args: P.args, **kwargs: P.kwargs) -> int:
            return await cache.invalidate_keys([key_for(*args, **kwargs)])

        wrapper.key_for = key_for  # type: ignore[attr-defined]
        wrapper.invalidate = invalidate  # type: ignore[attr-defined]
        return cast("AsyncCachedFunction[P, T]", wrapper)

    return decorate
