"""How the monitoring router is configured."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from freshcache._exceptions import ConfigurationError


def _token_from_environment() -> str | None:
    return os.environ.get("FRESHCACHE_ADMIN_TOKEN") or None


@dataclass(frozen=True)
class MonitoringSettings:
    """``admin_token`` guards the POSTs and the inspector (None: they answer 403).

    ``protect_reads``: the metrics, health and dashboard need the token too.
    ``database_check``: called (sync or async) by the health endpoint; it raises when the
    database cannot serve. Without it, a relay's engine is asked ``SELECT 1``.
    """

    admin_token: str | None = field(default_factory=_token_from_environment)
    protect_reads: bool = False
    recent_invalidations: int = 200
    cluster_interval: float = 5.0
    health_timeout: float = 2.0
    database_check: Callable[[], Any] | None = None
    required_for_health: tuple[str, ...] = ("database", "cache")

    def __post_init__(self) -> None:
        if self.admin_token is not None and len(self.admin_token) < 16:
            raise ConfigurationError(
                "admin_token must be at least 16 characters (FRESHCACHE_ADMIN_TOKEN); "
                "a short token can be guessed"
            )
        if self.recent_invalidations < 1:
            raise ConfigurationError(
                f"recent_invalidations must be at least 1, not {self.recent_invalidations}"
            )
        if not self.cluster_interval > 0 or not self.health_timeout > 0:
            raise ConfigurationError(
                "cluster_interval and health_timeout must be positive numbers of seconds, "
                f"not {self.cluster_interval} and {self.health_timeout}"
            )
        unknown = set(self.required_for_health) - {"database", "cache", "outbox", "events"}
        if unknown:
            raise ConfigurationError(
                f"required_for_health names unknown components {sorted(unknown)}: "
                "choose among database, cache, outbox, events"
            )
