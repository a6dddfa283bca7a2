"""The SQLAlchemy names the async code uses and the sync names unasync turns them into."""

from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session, sessionmaker

__all__ = ["AsyncEngine", "AsyncSession", "Engine", "Session", "async_sessionmaker", "sessionmaker"]
