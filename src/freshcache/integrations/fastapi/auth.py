"""Bearer-token checks: compared in constant time, 403 when no token is configured, 401 when wrong."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .settings import MonitoringSettings

_bearer = HTTPBearer(auto_error=False, description="FRESHCACHE_ADMIN_TOKEN")

DISABLED = (
    "the freshcache admin API is disabled: set FRESHCACHE_ADMIN_TOKEN (or "
    "MonitoringSettings(admin_token=...)) to a secret of 16 characters or more to enable it"
)


def token_check(
    settings: MonitoringSettings,
) -> Callable[[HTTPAuthorizationCredentials | None], Awaitable[None]]:
    """A dependency that lets a request through only with ``Authorization: Bearer <token>``."""
    expected = None if settings.admin_token is None else settings.admin_token.encode()

    async def require_token(
        credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008 - FastAPI's idiom
    ) -> None:
        if expected is None:
            raise HTTPException(status.HTTP_403_FORBIDDEN, DISABLED)
        given = b"" if credentials is None else credentials.credentials.encode()
        if not hmac.compare_digest(given, expected):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "a valid Authorization: Bearer <FRESHCACHE_ADMIN_TOKEN> header is required",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return require_token


async def no_check() -> None:
    """For the read endpoints when ``protect_reads`` is off."""
