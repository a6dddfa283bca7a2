"""What the router reports on: a cache, a manager, an outbox relay and an event bus, of either kind.

Each may be None. The async and the sync classes are both accepted, checked at
construction; a sync object's blocking calls run in the thread pool, so an endpoint
never blocks the event loop.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool

from freshcache._async.cache import AsyncCache
from freshcache._async.events.bus import AsyncEventBus
from freshcache._async.manager import AsyncInvalidationManager
from freshcache._exceptions import ConfigurationError
from freshcache._kinds import require_kind
from freshcache._sync.cache import Cache
from freshcache._sync.events.bus import EventBus
from freshcache._sync.manager import InvalidationManager

OWNER = "monitoring_router"


async def call(method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Await ``method`` if it is a coroutine function, else run it in the thread pool.

    A plain method that returns an awaitable (redis-py's asyncio commands do) has it awaited.
    """
    if inspect.iscoroutinefunction(method):
        return await method(*args, **kwargs)
    result = await run_in_threadpool(method, *args, **kwargs)
    if inspect.isawaitable(result):
        return await result
    return result


@dataclass(frozen=True)
class Sources:
    cache: AsyncCache | Cache | None
    manager: AsyncInvalidationManager | InvalidationManager | None
    relay: Any
    bus: AsyncEventBus | EventBus | None

    @classmethod
    def checked(cls, cache: Any, manager: Any, relay: Any, bus: Any) -> Sources:
        """ConfigurationError naming what is wrong, before anything is served."""
        if manager is not None:
            require_kind(manager, (AsyncInvalidationManager, InvalidationManager), OWNER)
            if cache is None:
                cache = manager.cache
        if cache is not None:
            require_kind(cache, (AsyncCache, Cache), OWNER)
        if bus is not None:
            require_kind(bus, (AsyncEventBus, EventBus), OWNER)
        if relay is not None:
            # Imported only when given: SQLAlchemy is an optional extra.
            from freshcache.integrations.sqlalchemy import AsyncOutboxRelay, OutboxRelay

            require_kind(relay, (AsyncOutboxRelay, OutboxRelay), OWNER)
        if cache is None and manager is None and relay is None and bus is None:
            raise ConfigurationError(
                f"{OWNER} needs at least one of cache=, manager=, relay= or bus= to report on"
            )
        return cls(cache, manager, relay, bus)
