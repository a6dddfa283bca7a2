"""Health: database, cache, outbox and event transport, each up or down with a reason.

Every check has a deadline (``health_timeout``), so a paused server makes the answer
"down", never a hung request. The answer is 503 when a component the service needs to
serve (``required_for_health``) is down.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Literal

from .schemas import Component, HealthAnswer
from .settings import MonitoringSettings
from .sources import Sources, call


async def check(sources: Sources, settings: MonitoringSettings) -> HealthAnswer:
    checks: dict[str, Callable[[], Any] | None] = {
        "database": _database_check(sources, settings),
        "cache": None if sources.cache is None else sources.cache.backend.ping,
        "outbox": None if sources.relay is None else sources.relay.stats,
        "events": None if sources.bus is None else _transport_check(sources.bus.transport),
    }
    results = await asyncio.gather(*(_run(name, probe, settings) for name, probe in checks.items()))
    components = dict(zip(checks, results, strict=True))
    down = [name for name, part in components.items() if part.status == "down"]
    overall: Literal["up", "degraded", "down"]
    if any(components[name].required for name in down):
        overall = "down"
    else:
        overall = "degraded" if down else "up"
    return HealthAnswer(status=overall, components=components)


async def _run(
    name: str, probe: Callable[[], Any] | None, settings: MonitoringSettings
) -> Component:
    required = name in settings.required_for_health
    if probe is None:
        return Component(status="not configured", required=required)
    try:
        await asyncio.wait_for(call(probe), settings.health_timeout)
    except asyncio.TimeoutError:
        reason = f"no answer within {settings.health_timeout} s"
        return Component(status="down", reason=reason, required=required)
    except Exception as exc:
        return Component(status="down", reason=f"{type(exc).__name__}: {exc}", required=required)
    return Component(status="up", required=required)


def _database_check(sources: Sources, settings: MonitoringSettings) -> Callable[[], Any] | None:
    if settings.database_check is not None:
        return settings.database_check
    if sources.relay is None:
        return None
    engine = sources.relay.engine
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import AsyncEngine

    if isinstance(engine, AsyncEngine):

        async def select_one() -> None:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))

        return select_one

    def select_one_sync() -> None:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    return select_one_sync


def _transport_check(transport: Any) -> Callable[[], Any]:
    """A transport on Redis is up when its server answers; an in-process one always is."""
    client = getattr(transport, "client", None)
    if client is not None and hasattr(client, "ping"):
        return client.ping  # type: ignore[no-any-return]
    return lambda: None
