"""What a Redis URL may say, checked whole before anything connects.

A typo in a URL (a database that is not a number, an option nobody reads) would
otherwise surface at the first call, or never. The query carries freshcache's own
options (``namespace``, ``serializer``, ``tag_ttl``) beside redis-py's.
"""

from __future__ import annotations

import inspect
import re
from types import ModuleType
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from freshcache._durations import seconds
from freshcache._exceptions import ConfigurationError
from freshcache._urls import listed, query_options, safe_url

REDIS_SCHEMES = ("redis", "rediss", "unix")
# The keyword options of the Redis backend's from_url.
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

# The query options of a Redis URL that freshcache reads itself; redis-py reads the rest.
_OWN_QUERY = frozenset({"namespace", "serializer", "tag_ttl"})
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


def check_redis_url(url: str, connections: ModuleType) -> None:
    """Raise ConfigurationError for a Redis URL whose database or query options cannot work.

    ``connections`` is the redis-py module whose connection classes will read the URL
    (``redis.connection`` or ``redis.asyncio.connection``): what the query may hold is what
    their parameters are.
    """
    parts = urlsplit(url)
    query = query_options(url)
    connection_class = {
        "rediss": connections.SSLConnection,
        "unix": connections.UnixDomainSocketConnection,
    }.get(parts.scheme, connections.Connection)
    driver = _DRIVER_QUERY.intersection(_parameters(connection_class))
    accepted = _OWN_QUERY | driver | {"max_connections"}
    unknown = set(query) - accepted
    if unknown:
        raise ConfigurationError(
            f"Redis URL {safe_url(url)}: unknown option {listed(unknown)}; a {parts.scheme}:// "
            f"URL's query takes {listed(accepted)}"
        )
    if parts.scheme != "unix":  # there the path is the socket's; the database is ?db=N
        database = _DATABASE.fullmatch(parts.path)
        if database is None:
            raise ConfigurationError(
                f"Redis URL {safe_url(url)}: the database must be a number, as in "
                f"redis://host:6379/0, not {parts.path.strip('/')!r}"
            )
    if "db" in query and not query["db"].isdigit():
        raise ConfigurationError(
            f"Redis URL {safe_url(url)}: db must be a number, not {query['db']!r}"
        )
    if parts.scheme != "unix" and "db" in query:
        in_path = _DATABASE.fullmatch(parts.path)
        if in_path and in_path.group(1) and int(in_path.group(1)) != int(query["db"]):
            raise ConfigurationError(
                f"Redis URL {safe_url(url)} names database {in_path.group(1)} in its path "
                f"and {query['db']} in its query; give one"
            )
    if "tag_ttl" in query:
        try:
            tag_ttl = float(query["tag_ttl"])
        except ValueError:
            raise ConfigurationError(
                f"Redis URL {safe_url(url)}: tag_ttl must be a number of seconds, not {query['tag_ttl']!r}"
            ) from None
        seconds("tag_ttl", tag_ttl)


def split_redis_url(url: str) -> tuple[dict[str, str], str]:
    """freshcache's own options from the URL's query, and the URL without them, for redis-py."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    own = {name: value for name, value in query if name in _OWN_QUERY}
    rest = [(name, value) for name, value in query if name not in _OWN_QUERY]
    return own, urlunsplit(parts._replace(query=urlencode(rest)))


def _parameters(cls: type) -> set[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            names.update(inspect.signature(vars(klass)["__init__"]).parameters)
    return names
