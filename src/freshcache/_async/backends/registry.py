"""Backends by URL scheme, imported on first use (redis is an optional dependency)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

from freshcache._async.backends.base import AsyncBackend
from freshcache._exceptions import ConfigurationError

MEMORY_OPTIONS = frozenset({"max_entries", "max_bytes", "max_tags"})
REDIS_OPTIONS = frozenset(
    {
        "namespace",
        "serializer",
        "pickle_key",
        "tag_ttl",
        "socket_timeout",
        "connect_timeout",
        "retries",
        "max_connections",
    }
)
BACKEND_OPTIONS = MEMORY_OPTIONS | REDIS_OPTIONS


def async_backend_from_url(url: str, **options: Any) -> AsyncBackend:
    """``memory://[?max_entries=N&max_bytes=N]`` or ``redis://``, ``rediss://``, ``unix://``."""
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(
            f"cache URL must look like memory:// or redis://host:port/db, not {url!r}"
        )
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        from freshcache._async.backends.memory import AsyncMemoryBackend

        query = dict(parse_qsl(urlsplit(url).query))
        unknown = set(query) - MEMORY_OPTIONS
        if unknown or set(options) - MEMORY_OPTIONS:
            raise ConfigurationError(
                f"memory:// takes {', '.join(sorted(MEMORY_OPTIONS))}; got {', '.join(sorted(unknown | (set(options) - MEMORY_OPTIONS)))}"
            )
        try:
            sizes = {name: int(value) for name, value in query.items()}
        except ValueError as exc:
            raise ConfigurationError(f"memory:// options are whole numbers: {exc}") from None
        return AsyncMemoryBackend(**{**sizes, **options})
    if scheme in ("redis", "rediss", "unix"):
        try:
            from freshcache._async.backends.redis import AsyncRedisBackend
        except ImportError:  # pragma: no cover - depends on the environment
            raise ConfigurationError(
                "the Redis backend needs redis-py: pip install 'freshcache[redis]'"
            ) from None
        unknown = set(options) - REDIS_OPTIONS
        if unknown:
            raise ConfigurationError(f"unknown Redis backend options: {', '.join(sorted(unknown))}")
        return AsyncRedisBackend.from_url(url, **options)
    raise ConfigurationError(f"unknown cache URL scheme {scheme!r}; use memory:// or redis://")
