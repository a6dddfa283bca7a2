"""Cache URLs and from_url options are checked whole, before anything connects, for both APIs."""

from __future__ import annotations

from typing import Any

import pytest

from freshcache import AsyncCache, Cache, ConfigurationError
from freshcache._async.backends.redis import AsyncRedisBackend
from freshcache._sync.backends.redis import RedisBackend

CACHES = [AsyncCache, Cache]


@pytest.mark.parametrize("cache_class", CACHES)
@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://127.0.0.1:6379/abc", "the database must be a number.* not 'abc'"),
        ("rediss://127.0.0.1:6379/1x", "the database must be a number.* not '1x'"),
        ("redis://127.0.0.1:6379/-1", "the database must be a number.* not '-1'"),
        ("redis://127.0.0.1:6379/0/extra", "the database must be a number"),
        ("redis://127.0.0.1:6379/0?db=abc", "db must be a number, not 'abc'"),
        ("redis://127.0.0.1:6379/1?db=2", "names database 1 in its path and 2 in its query"),
    ],
)
def test_a_database_that_is_not_a_number_is_refused(
    cache_class: type[AsyncCache | Cache], url: str, message: str
) -> None:
    """A Redis URL whose database is not a number raises ConfigurationError naming it, instead of using db 0."""
    with pytest.raises(ConfigurationError, match=message):
        cache_class.from_url(url)


@pytest.mark.parametrize("cache_class", CACHES)
def test_an_unknown_url_option_is_refused_with_the_valid_ones(
    cache_class: type[AsyncCache | Cache],
) -> None:
    """An option nobody reads in a Redis URL's query fails in from_url, listing the options a URL may carry."""
    with pytest.raises(ConfigurationError, match="unknown option colour") as caught:
        cache_class.from_url("redis://127.0.0.1:6379/0?colour=red")
    for valid in ("namespace", "serializer", "tag_ttl", "socket_timeout", "db", "max_connections"):
        assert valid in str(caught.value)


@pytest.mark.parametrize("cache_class", CACHES)
@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://127.0.0.1:6379/0?namespace=a&namespace=b", "gives namespace twice"),
        ("redis://127.0.0.1:6379/0?namespace=", "gives namespace without a value"),
        ("redis://127.0.0.1:6379/0?tag_ttl=day", "tag_ttl must be a number of seconds, not 'day'"),
        ("redis://127.0.0.1:6379/0?tag_ttl=-5", "tag_ttl must be a positive number"),
        ("redis://127.0.0.1:6379/0?tag_ttl=inf", "tag_ttl must be a positive number"),
        ("redis://127.0.0.1:6379/0?socket_timeout=soon", "Invalid value for 'socket_timeout'"),
        ("redis://127.0.0.1:6379/0?serializer=yaml", "unknown serializer 'yaml'"),
        ("memory://?max_entries=10&max_entries=20", "gives max_entries twice"),
        ("memory://?colour=red", "got colour"),
        ("memory://somewhere", "takes no host or path"),
    ],
)
def test_other_bad_url_options_are_refused(
    cache_class: type[AsyncCache | Cache], url: str, message: str
) -> None:
    """An option given twice, empty, or with a value that cannot work raises ConfigurationError saying which."""
    with pytest.raises(ConfigurationError, match=message):
        cache_class.from_url(url)


def test_the_password_stays_out_of_the_message() -> None:
    """An error about a URL with a password shows the URL without it."""
    with pytest.raises(ConfigurationError) as caught:
        Cache.from_url("redis://user:s3cret@127.0.0.1:6379/abc")
    assert "s3cret" not in str(caught.value)
    assert "user:***@" in str(caught.value)


@pytest.mark.parametrize("backend_class", [AsyncRedisBackend, RedisBackend])
def test_the_redis_backend_checks_its_url_too(
    backend_class: type[AsyncRedisBackend | RedisBackend],
) -> None:
    """The backend's own from_url refuses the same URLs as the cache's."""
    with pytest.raises(ConfigurationError, match="not 'abc'"):
        backend_class.from_url("redis://127.0.0.1:6379/abc")
    with pytest.raises(ConfigurationError, match="unknown option colour"):
        backend_class.from_url("redis://127.0.0.1:6379/0?colour=red")


@pytest.mark.parametrize("cache_class", CACHES)
@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        (
            "redis://127.0.0.1:6379/0",
            {"ttl": 5},
            r"does not take ttl \(did you mean default_ttl\?\)",
        ),
        ("memory://", {"ttl": 5}, r"does not take ttl \(did you mean default_ttl\?\)"),
        ("memory://", {"namespace": "x"}, "does not take namespace;.* its backend max_bytes"),
        ("redis://127.0.0.1:6379/0", {"max_entries": 5}, "does not take max_entries"),
        ("redis://127.0.0.1:6379/0", {"colour": "red"}, "does not take colour;"),
    ],
)
def test_an_unknown_option_lists_the_accepted_ones(
    cache_class: type[AsyncCache | Cache], url: str, options: dict[str, Any], message: str
) -> None:
    """from_url with an option neither the cache nor its backend takes names it and lists those they take."""
    with pytest.raises(ConfigurationError, match=message) as caught:
        cache_class.from_url(url, **options)
    for accepted in ("default_ttl", "lease_ttl", "raise_errors"):
        assert accepted in str(caught.value)


@pytest.mark.parametrize("cache_class", CACHES)
@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379",
        "redis://127.0.0.1:6379/",
        "redis://127.0.0.1:6379/3",
        "redis://127.0.0.1:6379/3?db=3",
        "redis://:pw@127.0.0.1:6379/0?namespace=app&serializer=msgpack&tag_ttl=3600",
        "redis://127.0.0.1:6379/0?socket_timeout=1.5&client_name=web&health_check_interval=30",
        "rediss://127.0.0.1:6380/0?ssl_cert_reqs=none",
        "memory://?max_entries=50&max_bytes=1000000",
    ],
)
def test_good_urls_are_accepted(cache_class: type[AsyncCache | Cache], url: str) -> None:
    """URLs that can work build a cache without connecting."""
    cache = cache_class.from_url(url, default_ttl=60)
    assert 60.0 == cache.default_ttl
