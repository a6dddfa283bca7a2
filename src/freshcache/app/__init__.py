"""The reference service: users, challenges and evaluations over FastAPI and SQLAlchemy, every read cached.

``create_app(Settings())`` is what ``freshcache serve`` runs; the defaults (a SQLite file
and the memory cache) need no server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from freshcache._extras import missing_extra

try:
    import fastapi  # noqa: F401
    import pydantic_settings  # noqa: F401 - only to name the extra when it is missing
except ImportError as exc:
    raise missing_extra(exc, "app", "freshcache.app") from exc

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from freshcache import ConflictError, DatabaseError, FreshcacheError, InvalidEntityError
from freshcache.app import seed as seeding
from freshcache.app.limits import BodyLimit
from freshcache.app.models import Base
from freshcache.app.routes import router
from freshcache.app.service import Service, build
from freshcache.app.settings import Settings
from freshcache.integrations.fastapi import MonitoringSettings, monitoring_router

__all__ = ["Settings", "create_app"]


async def create_schema(service: Service) -> None:
    """The service's tables and the outbox, where they are missing."""
    async with service.engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)


async def start(service: Service, on_progress: seeding.Progress | None = None) -> None:
    """Create the schema, seed an empty database (when the settings say so), start the relay and the bus."""
    await create_schema(service)
    if service.settings.seed and await seeding.is_empty(service.users):
        await seeding.seed(service.users, on_progress=on_progress)
    await service.bus.start()
    service.relay.start()


async def stop(service: Service) -> None:
    """The relay applies what is left, then the bus, manager, cache and engine close."""
    await service.relay.aclose()
    await service.bus.aclose()
    await service.manager.aclose()
    await service.cache.aclose()
    await service.engine.dispose()


def create_app(settings: Settings | None = None) -> FastAPI:
    """The service's FastAPI application; nothing connects before its lifespan starts."""
    settings = settings if settings is not None else Settings()
    service = build(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await start(service)
        try:
            yield
        finally:
            await stop(service)

    app = FastAPI(title="freshcache reference service", lifespan=lifespan)
    app.state.service = service
    app.add_middleware(BodyLimit)
    app.include_router(router)
    app.include_router(
        monitoring_router(
            cache=service.cache,
            manager=service.manager,
            relay=service.relay,
            bus=service.bus,
            settings=MonitoringSettings(admin_token=settings.admin_token),
        )
    )

    # The library's errors, as HTTP: a duplicate is a conflict, a value the database
    # refused is the client's, and a database that cannot answer is unavailable.
    @app.exception_handler(ConflictError)
    async def conflict(request: Request, exc: ConflictError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(InvalidEntityError)
    async def invalid(request: Request, exc: InvalidEntityError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(DatabaseError)
    async def unavailable(request: Request, exc: DatabaseError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.exception_handler(FreshcacheError)
    async def failed(request: Request, exc: FreshcacheError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    return app
