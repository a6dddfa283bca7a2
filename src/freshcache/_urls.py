"""Reading a cache URL: its query options, strictly, and its text as an error may show it."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import parse_qsl, urlsplit

from freshcache._exceptions import ConfigurationError


def query_options(url: str) -> dict[str, str]:
    """The URL's query options; one given twice or without a value is an error, not a guess."""
    query: dict[str, str] = {}
    for name, value in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        if name in query:
            raise ConfigurationError(f"cache URL {safe_url(url)} gives {name} twice")
        if not value:
            raise ConfigurationError(f"cache URL {safe_url(url)} gives {name} without a value")
        query[name] = value
    return query


def safe_url(url: str) -> str:
    """The URL as it may appear in an error: without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return repr(url)
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return repr(parts._replace(netloc=netloc).geturl())


def listed(names: Iterable[str]) -> str:
    return ", ".join(sorted(names))
