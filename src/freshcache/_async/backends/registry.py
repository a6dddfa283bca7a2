"""Backends by URL scheme, imported on first use (redis is an optional dependency).

A URL is checked whole before anything connects: a typo in it (a database that is not a
number, an option nobody reads) would otherwise surface at the first call, or never.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from freshcache._async.backends.base import AsyncBackend
from freshcache._durations import seconds
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
REDIS_SCHEMES = ("redis", "rediss", "unix")

# The query options of a Redis URL that freshcache reads itself; redis-py reads the rest.
_OWN_REDIS_QUERY = frozenset({"namespace", "serializer", "tag_ttl"})
# What redis-py may take from a URL's query, as far as this redis-py's connection class
# has the parameter. Left out on purpose: decode_responses and encoding (entries are bytes).
_DRIVER_QUERY = frozenset(
    {
        "db",
        "username",
        "password",
        "client_name",
        "protocol",
        "socket_timeout",
        "socket_connect_timeout",
        "socket_keepalive",
        "socket_read_size",
        "retry_on_timeout",
        "health_check_interval",
        "ssl_ca_certs",
        "ssl_ca_path",
        "ssl_cert_reqs",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_password",
        "ssl_check_hostname",
        "ssl_ciphers",
        "ssl_min_version",
    }
)
_DATABASE = re.compile(r"/?(\d+)?/?")


def backend_options(url: str) -> frozenset[str]:
    """The keyword options the backend of ``url``'s scheme takes."""
    scheme = _scheme(url)
    if scheme == "memory":
        return MEMORY_OPTIONS
    if scheme in REDIS_SCHEMES:
        return REDIS_OPTIONS
    raise ConfigurationError(
        f"unknown cache URL scheme {scheme!r} in {url!r}; use memory://, redis://, rediss:// or unix://"
    )


def async_backend_from_url(url: str, **options: Any) -> AsyncBackend:
    """``memory://[?max_entries=N&max_bytes=N]`` or ``redis://``, ``rediss://``, ``unix://``."""
    accepted = backend_options(url)
    unknown = set(options) - accepted
    if unknown:
        raise ConfigurationError(
            f"{_scheme(url)}:// takes {_names(accepted)}; got {_names(unknown)}"
        )
    if _scheme(url) == "memory":
        from freshcache._async.backends.memory import AsyncMemoryBackend

        return AsyncMemoryBackend(**{**_memory_sizes(url), **options})
    try:
        from freshcache._async.backends.redis import AsyncRedisBackend
    except ImportError:  # pragma: no cover - depends on the environment
        raise ConfigurationError(
            "the Redis backend needs redis-py: pip install 'freshcache[redis]'"
        ) from None
    check_redis_url(url)
    return AsyncRedisBackend.from_url(url, **options)


def check_redis_url(url: str) -> None:
    """Raise ConfigurationError for a Redis URL whose database or query options cannot work."""
    import redis.asyncio.connection

    parts = urlsplit(url)
    query = _query(url)
    connection_class = {
        "rediss": redis.asyncio.connection.SSLConnection,
        "unix": redis.asyncio.connection.UnixDomainSocketConnection,
    }.get(parts.scheme, redis.asyncio.connection.Connection)
    driver = _DRIVER_QUERY.intersection(_parameters(connection_class))
    accepted = _OWN_REDIS_QUERY | driver | {"max_connections"}
    unknown = set(query) - accepted
    if unknown:
        raise ConfigurationError(
            f"Redis URL {_safe(url)}: unknown option {_names(unknown)}; a {parts.scheme}:// "
            f"URL's query takes {_names(accepted)}"
        )
    if parts.scheme != "unix":  # there the path is the socket's; the database is ?db=N
        database = _DATABASE.fullmatch(parts.path)
        if database is None:
            raise ConfigurationError(
                f"Redis URL {_safe(url)}: the database must be a number, as in "
                f"redis://host:6379/0, not {parts.path.strip('/')!r}"
            )
    if "db" in query and not query["db"].isdigit():
        raise ConfigurationError(
            f"Redis URL {_safe(url)}: db must be a number, not {query['db']!r}"
        )
    if parts.scheme != "unix" and "db" in query:
        in_path = _DATABASE.fullmatch(parts.path)
        if in_path and in_path.group(1) and int(in_path.group(1)) != int(query["db"]):
            raise ConfigurationError(
                f"Redis URL {_safe(url)} names database {in_path.group(1)} in its path "
                f"and {query['db']} in its query; give one"
            )
    if "tag_ttl" in query:
        try:
            tag_ttl = float(query["tag_ttl"])
        except ValueError:
            raise ConfigurationError(
                f"Redis URL {_safe(url)}: tag_ttl must be a number of seconds, not {query['tag_ttl']!r}"
            ) from None
        seconds("tag_ttl", tag_ttl)


def _scheme(url: str) -> str:
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(
            f"cache URL must look like memory:// or redis://host:port/db, not {url!r}"
        )
    return urlsplit(url).scheme


def _memory_sizes(url: str) -> dict[str, int]:
    parts = urlsplit(url)
    if parts.netloc or parts.path.strip("/"):
        raise ConfigurationError(f"memory:// takes no host or path: {url!r}")
    query = _query(url)
    unknown = set(query) - MEMORY_OPTIONS
    if unknown:
        raise ConfigurationError(
            f"memory:// URL {url!r} takes {_names(MEMORY_OPTIONS)}; got {_names(unknown)}"
        )
    try:
        return {name: int(value) for name, value in query.items()}
    except ValueError as exc:
        raise ConfigurationError(f"memory:// options are whole numbers: {exc}") from None


def _query(url: str) -> dict[str, str]:
    """The URL's query options; one given twice or without a value is an error, not a guess."""
    query: dict[str, str] = {}
    for name, value in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        if name in query:
            raise ConfigurationError(f"cache URL {_safe(url)} gives {name} twice")
        if not value:
            raise ConfigurationError(f"cache URL {_safe(url)} gives {name} without a value")
        query[name] = value
    return query


def _parameters(cls: type) -> set[str]:
    import inspect

    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            names.update(inspect.signature(vars(klass)["__init__"]).parameters)
    return names


def _names(names: set[str] | frozenset[str]) -> str:
    return ", ".join(sorted(names))


def _safe(url: str) -> str:
    """The URL as it may appear in an error: without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return repr(url)
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return repr(parts._replace(netloc=netloc).geturl())
