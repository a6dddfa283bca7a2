"""Every option given in seconds takes a number or a timedelta, and refuses the rest before any I/O."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import redis.asyncio
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import create_async_engine

from freshcache import (
    AsyncCache,
    AsyncEventBus,
    AsyncInvalidationManager,
    AsyncRetryQueue,
    ConfigurationError,
)
from freshcache._async.backends.redis import AsyncRedisBackend
from freshcache._async.events.transports.redis_streams import AsyncRedisStreamsTransport
from freshcache.integrations.sqlalchemy import AsyncOutboxRelay, outbox_table


def _manager(**options: Any) -> Any:
    return AsyncInvalidationManager(AsyncCache.from_url("memory://"), **options)


def _queue(**options: Any) -> Any:
    return AsyncRetryQueue(AsyncCache.from_url("memory://"), **options)


def _relay(**options: Any) -> Any:
    engine = create_async_engine("sqlite+aiosqlite://")  # lazy: nothing connects
    manager = AsyncInvalidationManager(AsyncCache.from_url("memory://"))
    return AsyncOutboxRelay(engine, manager, outbox_table(MetaData()), **options)


def _redis_backend(**options: Any) -> Any:
    return AsyncRedisBackend(redis.asyncio.Redis(port=1), **options)  # lazy: nothing connects


def _transport(**options: Any) -> Any:
    return AsyncRedisStreamsTransport(redis.asyncio.Redis(port=1), service="tests", **options)


# (what builds it, the option, the attribute that keeps it in seconds, or None)
OPTIONS: list[tuple[Callable[..., Any], str, str | None]] = [
    (_manager, "pending_ttl", "pending_ttl"),
    (_manager, "backoff", "backoff"),
    (_manager, "max_backoff", "max_backoff"),
    (_queue, "first_delay", "first_delay"),
    (_queue, "max_delay", "max_delay"),
    (_relay, "grace", "grace"),
    (_relay, "interval", "interval"),
    (AsyncEventBus, "handler_timeout", "handler_timeout"),
    (_redis_backend, "tag_ttl", "tag_ttl"),
    (_transport, "redeliver_after", "redeliver_after"),
    (_transport, "block", None),
]
IDS = [f"{build.__name__.strip('_')}-{option}" for build, option, _ in OPTIONS]


@pytest.mark.parametrize(("build", "option", "attribute"), OPTIONS, ids=IDS)
def test_a_timedelta_is_taken_as_seconds(
    build: Callable[..., Any], option: str, attribute: str | None
) -> None:
    """A timedelta is accepted wherever seconds are, and kept as its seconds."""
    built = build(**{option: timedelta(milliseconds=1500)})
    if attribute is not None:
        assert 1.5 == getattr(built, attribute)


@pytest.mark.parametrize(("build", "option", "attribute"), OPTIONS, ids=IDS)
@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), 1e15, "5", True])
def test_bad_seconds_are_refused_naming_the_option(
    build: Callable[..., Any], option: str, attribute: str | None, bad: object
) -> None:
    """Negative, NaN, infinite, absurd, text and boolean seconds are a ConfigurationError naming the option."""
    with pytest.raises(ConfigurationError, match=rf"^{option} must be"):
        build(**{option: bad})


async def test_begin_takes_its_ttl_as_a_timedelta_and_refuses_a_bad_one() -> None:
    """InvalidationManager.begin accepts a timedelta ttl and refuses a bad one before marking anything."""
    manager = _manager()
    pending = await manager.begin(["t"], ttl=timedelta(seconds=5))
    assert pending.marked
    await manager.abort(pending)
    with pytest.raises(ConfigurationError, match=r"^ttl must be"):
        await manager.begin(["t"], ttl=float("nan"))
    await manager.aclose()
