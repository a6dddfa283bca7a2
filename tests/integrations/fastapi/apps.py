"""Small FastAPI apps that mount the monitoring router, for the tests of this package."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from freshcache import Rules
from freshcache.integrations.fastapi import MonitoringSettings, monitoring_router

TOKEN = "test-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def rules() -> Rules:
    return Rules().entity("user", tags=["user:{id}", "users"]).entity("post", tags=["post:{id}"])


def app_with(**sources: Any) -> FastAPI:
    """An app with the router on ``sources``; settings default to the test token."""
    sources.setdefault("settings", MonitoringSettings(admin_token=TOKEN, cluster_interval=0.2))
    app = FastAPI()
    app.include_router(monitoring_router(**sources))
    return app
