"""The SQLAlchemy names the async code uses and the sync names unasync turns them into."""

from sqlalchemy import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session, sessionmaker

__all__ = [
    "AsyncConnection",
    "AsyncEngine",
    "AsyncSession",
    "Connection",
    "Engine",
    "Session",
    "async_sessionmaker",
    "sessionmaker",
]
