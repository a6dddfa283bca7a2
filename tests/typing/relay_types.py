"""The session hooks take an outbox relay of either kind, and mypy refuses what is not a relay."""

from __future__ import annotations

from freshcache import AsyncInvalidationManager, InvalidationManager
from freshcache.integrations.sqlalchemy import AsyncOutboxRelay, OutboxRelay, SessionInvalidation


def hooks_take_either_relay(
    async_manager: AsyncInvalidationManager,
    async_relay: AsyncOutboxRelay,
    manager: InvalidationManager,
    relay: OutboxRelay,
) -> None:
    SessionInvalidation(async_manager, relay=async_relay)
    SessionInvalidation(manager, relay=relay)
    SessionInvalidation(manager, relay="the outbox")  # type: ignore[arg-type]
