"""``monitoring_router``: the monitoring and admin API, Prometheus, health, the inspector, the dashboard."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from freshcache._consistency import figures
from freshcache._exceptions import BackendError, FreshcacheError

from . import consistency, health, inspector, snapshot
from .auth import no_check, token_check
from .cluster import ClusterTotals
from .invalidation import NeedsManager, invalidate
from .recent import RecentInvalidations
from .rules import rules_router
from .schemas import (
    HealthAnswer,
    InvalidateAnswer,
    InvalidateRequest,
    KeyAnswer,
    MetricInfo,
    MetricsAnswer,
    Problem,
    ResetAnswer,
    TagAnswer,
)
from .settings import MonitoringSettings
from .sources import Sources

_DASHBOARD = resources.files(__package__) / "dashboard"
_ASSETS = {"app.js": "text/javascript", "style.css": "text/css"}
_UNAUTHORIZED: dict[int | str, dict[str, Any]] = {401: {"model": Problem}, 403: {"model": Problem}}
_UNAVAILABLE: dict[int | str, dict[str, Any]] = {503: {"model": Problem}}
# A 404 of the inspector is the explanation of an unknown key or tag, or (a key with a
# control character, which no route matches) the framework's own "Not Found".


def monitoring_router(
    *,
    cache: Any = None,
    manager: Any = None,
    relay: Any = None,
    bus: Any = None,
    settings: MonitoringSettings | None = None,
) -> APIRouter:
    """The router to ``app.include_router(...)``; any of its sources may be None, async or sync.

    Its lifespan (merged into the app's) runs the cluster totals of a Redis-backed cache.
    """
    settings = settings if settings is not None else MonitoringSettings()
    sources = Sources.checked(cache, manager, relay, bus)
    recent = RecentInvalidations(settings.recent_invalidations)
    if sources.manager is not None:
        recent.follow(sources.manager)
    totals = None
    if sources.cache is not None:
        totals = ClusterTotals.for_backend(
            sources.cache.backend,
            lambda: snapshot.counters(sources),
            interval=settings.cluster_interval,
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if totals is not None:
            totals.start()
        try:
            yield
        finally:
            if totals is not None:
                await run_in_threadpool(totals.close)

    admin = Depends(token_check(settings))
    read = Depends(token_check(settings) if settings.protect_reads else no_check)
    read_errors = _UNAUTHORIZED if settings.protect_reads else {}
    router = APIRouter(lifespan=lifespan, tags=["freshcache"])
    router.include_router(rules_router(sources.manager, read, read_errors))

    # Metrics

    @router.get(
        "/api/system/metrics/cache",
        response_model=MetricsAnswer,
        dependencies=[read],
        responses={**read_errors, 404: {"model": Problem}, **_UNAVAILABLE},
    )
    async def metrics(scope: Literal["process", "cluster"] = "process") -> dict[str, Any]:
        """Every cache, manager, relay and event metric; ``scope=cluster``: totals of every process."""
        if scope == "process":
            return snapshot.report(sources)
        if totals is None:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND,
                "cluster totals need a cache on a Redis backend: processes share them there",
            )
        try:
            await run_in_threadpool(totals.flush)
            flat, processes = await run_in_threadpool(totals.totals)
        except Exception as exc:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE, f"cluster totals unreadable: {exc}"
            ) from None
        return _cluster_report(flat, processes)

    @router.get(
        "/api/system/metrics/table",
        response_model=list[MetricInfo],
        dependencies=[read],
        responses=read_errors,
    )
    async def metric_table() -> list[dict[str, Any]]:
        """Every metric's name, kind and help text: the one table the JSON and Prometheus read."""
        return snapshot.metric_table()

    @router.get(
        "/api/system/cache/recent",
        response_model=list[dict[str, Any]],
        dependencies=[read],
        responses=read_errors,
    )
    async def recent_invalidations(limit: int = Query(50, ge=1, le=1000)) -> list[dict[str, Any]]:
        """The latest invalidations, newest first: entity types, tags, keys, source and time."""
        return recent.latest(limit)

    @router.get(
        "/api/system/cache/consistency",
        response_model=consistency.ConsistencyAnswer,
        dependencies=[read],
        responses={**read_errors, 404: {"model": Problem}},
    )
    async def consistency_report() -> dict[str, Any]:
        """The consistency monitor's checks, inconsistencies, ratio and nines, with the latest found."""
        try:
            return consistency.report(sources)
        except consistency.NoMonitor as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None

    @router.get("/metrics", response_class=Response, dependencies=[read], responses=read_errors)
    async def prometheus() -> Response:
        """Every metric in the Prometheus exposition format."""
        body, content_type = _exposition(sources)
        return Response(body, media_type=content_type)

    @router.get(
        "/api/system/health",
        response_model=HealthAnswer,
        dependencies=[read],
        responses={**read_errors, 503: {"model": HealthAnswer}},
    )
    async def health_check() -> JSONResponse:
        """Database, cache, outbox and event transport, each up or down with a reason."""
        answer = await health.check(sources, settings)
        code = (
            status.HTTP_503_SERVICE_UNAVAILABLE if answer.status == "down" else status.HTTP_200_OK
        )
        return JSONResponse(answer.model_dump(), status_code=code)

    # Admin

    @router.post(
        "/api/system/cache/invalidate",
        response_model=InvalidateAnswer,
        dependencies=[admin],
        # 400: a body that is not JSON at all (FastAPI's own answer, before validation)
        responses={400: {"model": Problem}, **_UNAUTHORIZED, **_UNAVAILABLE},
    )
    async def invalidate_now(body: InvalidateRequest) -> InvalidateAnswer:
        """Invalidate keys, tags, patterns or an entity; ``*`` and its like need ``"confirm": true``."""
        try:
            return await invalidate(sources, body, recent)
        except (NeedsManager, ValueError) as exc:
            raise _unprocessable(("body", "entity"), str(exc), body.entity) from None
        except BackendError as exc:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None

    @router.post(
        "/api/system/cache/reset-metrics",
        response_model=ResetAnswer,
        dependencies=[admin],
        responses=_UNAUTHORIZED,
    )
    async def reset_metrics() -> ResetAnswer:
        """Zero this process's counters and histograms (cluster totals keep what they had)."""
        if totals is None:
            return ResetAnswer(reset=snapshot.reset(sources))
        groups = await run_in_threadpool(totals.rebase, lambda: snapshot.reset(sources))
        return ResetAnswer(reset=groups)

    # Inspector

    @router.get(
        "/api/system/cache/keys/{key:path}",
        response_model=KeyAnswer,
        dependencies=[admin],
        responses={**_UNAUTHORIZED, 404: {"model": KeyAnswer | Problem}, **_UNAVAILABLE},
    )
    async def inspect_key(key: str = Path(min_length=1)) -> JSONResponse:
        """Would ``key`` hit now, and why not: its tags' stored and current versions, holders, TTL, size."""
        cache = _need_cache(sources)
        try:
            answer = await inspector.describe_key(cache, key, recent)
        except BackendError as exc:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None
        except FreshcacheError as exc:
            raise _unprocessable(("path", "key"), str(exc), key) from None
        code = status.HTTP_200_OK if inspector.key_is_known(answer) else status.HTTP_404_NOT_FOUND
        return JSONResponse(answer.model_dump(), status_code=code)

    @router.get(
        "/api/system/cache/tags/{tag:path}",
        response_model=TagAnswer,
        dependencies=[admin],
        responses={**_UNAUTHORIZED, 404: {"model": TagAnswer | Problem}, **_UNAVAILABLE},
    )
    async def inspect_tag(tag: str = Path(min_length=1)) -> JSONResponse:
        """A tag's version, its pending holders and the last invalidations that touched it."""
        cache = _need_cache(sources)
        try:
            answer = await inspector.describe_tag(cache, tag, recent)
        except BackendError as exc:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None
        except FreshcacheError as exc:
            raise _unprocessable(("path", "tag"), str(exc), tag) from None
        code = status.HTTP_200_OK if inspector.tag_is_known(answer) else status.HTTP_404_NOT_FOUND
        return JSONResponse(answer.model_dump(), status_code=code)

    # Dashboard: static files, no build step; its data comes from the endpoints above.

    @router.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
    async def dashboard() -> HTMLResponse:
        return HTMLResponse((_DASHBOARD / "index.html").read_text(encoding="utf-8"))

    @router.get("/dashboard/{name}", include_in_schema=False)
    async def dashboard_asset(name: str) -> Response:
        if name not in _ASSETS:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no dashboard file {name!r}")
        return Response((_DASHBOARD / name).read_bytes(), media_type=_ASSETS[name])

    return router


def _need_cache(sources: Sources) -> Any:
    if sources.cache is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no cache given to monitoring_router")
    return sources.cache


def _unprocessable(location: tuple[str, ...], message: str, given: Any) -> RequestValidationError:
    """A 422 shaped as FastAPI's own, so that every 422 matches one schema."""
    return RequestValidationError(
        [{"type": "value_error", "loc": location, "msg": message, "input": _plain(given)}]
    )


def _plain(value: Any) -> Any:
    return value.model_dump() if hasattr(value, "model_dump") else value


def _cluster_report(flat: dict[str, int], processes: int) -> dict[str, Any]:
    """Nest the summed ``group.key[.label]`` counters, and compute the headline from them."""
    out: dict[str, Any] = {"scope": "cluster", "processes": processes}
    for name, value in flat.items():
        group, key, *label = name.split(".", 2)
        section = out.setdefault(group, {})
        if label:
            section.setdefault(key, {})[label[0]] = value
        else:
            section[key] = value
    cache = out.setdefault("cache", {})
    reads = cache.get("hits", 0) + cache.get("misses", 0)
    cache["hit_rate"] = cache.get("hits", 0) / reads if reads else 0.0
    manager = out.get("manager") or {}
    manager.setdefault("invalidations_by_entity_type", {})
    if "monitor" in out:  # the ratio and the nines of the summed checks
        monitor = out["monitor"]
        monitor.update(figures(monitor.get("checked", 0), monitor.get("inconsistent", 0)))
    out.update(snapshot.headline(out))
    out["last_invalidation"] = None  # a time, not a count: per process only
    return out


def _exposition(sources: Sources) -> tuple[bytes, str]:
    # The one import of the collector in this package.
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    from freshcache.integrations.prometheus import FreshcacheCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        FreshcacheCollector(sources.cache, sources.manager, relay=sources.relay, bus=sources.bus)
    )
    return generate_latest(registry), CONTENT_TYPE_LATEST
