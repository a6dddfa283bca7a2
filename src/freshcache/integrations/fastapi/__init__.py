"""The monitoring and admin API as a FastAPI router (the ``fastapi`` extra).

::

    from fastapi import FastAPI
    from freshcache.integrations.fastapi import monitoring_router

    app = FastAPI()
    app.include_router(monitoring_router(cache=cache, manager=manager, relay=relay, bus=bus))

Paths: ``GET /api/system/metrics/cache`` (``?scope=cluster``), ``POST
/api/system/cache/invalidate``, ``POST /api/system/cache/reset-metrics``, ``GET /metrics``,
``GET /api/system/health``, ``GET /api/system/cache/keys/{key}``, ``GET
/api/system/cache/tags/{tag}``, ``GET /dashboard``.
"""

from __future__ import annotations

from freshcache._extras import missing_extra

try:
    import fastapi  # noqa: F401 - only to fail early, with the extra to install
except ImportError as exc:
    raise missing_extra(exc, "fastapi", "freshcache.integrations.fastapi") from exc

from .cluster import ClusterTotals
from .recent import RecentInvalidations
from .router import monitoring_router
from .settings import MonitoringSettings

__all__ = ["ClusterTotals", "MonitoringSettings", "RecentInvalidations", "monitoring_router"]
