"""Run a sync write (the legacy bulk methods have no async form) in an async session or a sync one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session


async def async_write_sync(session: AsyncSession, write: Callable[[Session], Any]) -> Any:
    return await session.run_sync(write)


def write_sync(session: Session, write: Callable[[Session], Any]) -> Any:
    return write(session)
