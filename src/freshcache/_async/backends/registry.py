"""Backends by URL scheme, imported on first use (redis is an optional dependency).

A URL is checked whole before anything connects: a typo in it (a database that is not a
number, an option nobody reads) would otherwise surface at the first call, or never. What
a Redis URL may say is Redis knowledge: :mod:`freshcache._redis.urls`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from freshcache._async.backends.base import AsyncBackend
from freshcache._exceptions import ConfigurationError
from freshcache._redis.urls import REDIS_OPTIONS, REDIS_SCHEMES
from freshcache._urls import listed, query_options

MEMORY_OPTIONS = frozenset({"max_entries", "max_bytes", "max_tags"})
BACKEND_OPTIONS = MEMORY_OPTIONS | REDIS_OPTIONS


def backend_options(url: str) -> frozenset[str]:
    """The keyword options the backend of ``url``'s scheme takes."""
    scheme = _scheme(url)
    if scheme == "memory":
        return MEMORY_OPTIONS
    if scheme == "none":
        return frozenset()
    if scheme in REDIS_SCHEMES:
        return REDIS_OPTIONS
    raise ConfigurationError(
        f"unknown cache URL scheme {scheme!r} in {url!r}; "
        "use memory://, redis://, rediss://, unix:// or none"
    )


def async_backend_from_url(url: str, **options: Any) -> AsyncBackend:
    """``memory://[?max_entries=N&max_bytes=N]``, ``redis://``, ``rediss://``, ``unix://``, ``none``.

    ``none`` (or ``none://``) is the backend that stores nothing: caching off.
    """
    accepted = backend_options(url)
    unknown = set(options) - accepted
    if unknown:
        raise ConfigurationError(
            f"{_scheme(url)}:// takes {listed(accepted) or 'no option'}; got {listed(unknown)}"
        )
    if _scheme(url) == "memory":
        from freshcache._async.backends.memory import AsyncMemoryBackend

        return AsyncMemoryBackend(**{**_memory_sizes(url), **options})
    if _scheme(url) == "none":
        from freshcache._async.backends.null import AsyncNullBackend

        _check_bare(url)
        return AsyncNullBackend()
    try:
        from freshcache._async.backends.redis import AsyncRedisBackend
    except ImportError:  # pragma: no cover - depends on the environment
        raise ConfigurationError(
            "the Redis backend needs redis-py: pip install 'freshcache[redis]'"
        ) from None
    return AsyncRedisBackend.from_url(url, **options)


def _scheme(url: str) -> str:
    if isinstance(url, str) and url.strip().lower() == "none":
        return "none"
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(
            f"cache URL must look like memory:// or redis://host:port/db, not {url!r}"
        )
    return urlsplit(url).scheme


def _check_bare(url: str) -> None:
    if url.strip().lower() != "none" and urlsplit(url)[1:] != ("", "", "", ""):
        raise ConfigurationError(f"none:// takes no host, path or option: {url!r}")


def _memory_sizes(url: str) -> dict[str, int]:
    parts = urlsplit(url)
    if parts.netloc or parts.path.strip("/"):
        raise ConfigurationError(f"memory:// takes no host or path: {url!r}")
    query = query_options(url)
    unknown = set(query) - MEMORY_OPTIONS
    if unknown:
        raise ConfigurationError(
            f"memory:// URL {url!r} takes {listed(MEMORY_OPTIONS)}; got {listed(unknown)}"
        )
    try:
        return {name: int(value) for name, value in query.items()}
    except ValueError as exc:
        raise ConfigurationError(f"memory:// options are whole numbers: {exc}") from None
