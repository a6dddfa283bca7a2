"""The admin invalidation: through the manager when there is one (retries, metrics, the log), else the cache."""

from __future__ import annotations

import time
from typing import Any

from starlette.concurrency import run_in_threadpool

from freshcache._async.manager import AsyncInvalidationManager
from freshcache._invalidations import Invalidation

from .recent import RecentInvalidations
from .schemas import InvalidateAnswer, InvalidateRequest
from .sources import Sources, call


class NeedsManager(Exception):
    """An entity was named but there is no manager (and so no rules) to turn it into tags."""


async def invalidate(
    sources: Sources, body: InvalidateRequest, recent: RecentInvalidations
) -> InvalidateAnswer:
    """Apply ``body``; what was invalidated, and in how long. Bad entities raise before any I/O."""
    started = time.perf_counter()
    manager = sources.manager
    done: list[Invalidation] = []
    key_count = len(body.keys)
    if manager is not None:
        entity_call = _entity_call(manager, body)  # checks the entity against the rules first
        if entity_call is not None:
            done.append(await entity_call())
        if body.keys or body.tags or body.patterns:
            done.append(await _batch(manager, body))
    else:
        if body.entity is not None:
            raise NeedsManager(
                "invalidating an entity needs the rules of an invalidation manager: "
                "pass manager= to monitoring_router"
            )
        cache: Any = sources.cache
        if body.tags:
            await call(cache.invalidate_tags, body.tags)
        if body.keys:
            key_count = await call(cache.invalidate_keys, body.keys)
        for pattern in body.patterns:
            key_count += await call(cache.invalidate_pattern, pattern, confirm_all=True)
        invalidation = Invalidation(
            tags=tuple(body.tags),
            keys=tuple(body.keys),
            patterns=tuple(body.patterns),
            source=body.source,
        )
        recent.record(invalidation)
        done.append(invalidation)
    return InvalidateAnswer(
        tags=list(dict.fromkeys(tag for each in done for tag in each.tags)),
        keys=list(body.keys),
        patterns=list(body.patterns),
        entity_types=list(dict.fromkeys(t for each in done for t in each.entity_types)),
        key_count=key_count,
        applied=all(each.applied for each in done),
        duration_ms=(time.perf_counter() - started) * 1000,
    )


def _entity_call(manager: Any, body: InvalidateRequest) -> Any:
    entity = body.entity
    if entity is None:
        return None
    if entity.id is not None:
        invalidator = manager.entity(entity.type)  # raises for an unknown type
        manager.rules.tags_from_values(entity.type, {"id": entity.id})  # raises if it names none
        return lambda: call(invalidator.invalidate, source=body.source, id=entity.id)
    manager.rules.tags_for(entity.type, new=entity.new, old=entity.old)  # a bad entity raises here
    return lambda: call(
        manager.invalidate_entity, entity.type, new=entity.new, old=entity.old, source=body.source
    )


def _fill(batch: Any, body: InvalidateRequest) -> None:
    batch.tags(body.tags)
    batch.keys(body.keys)
    for pattern in body.patterns:
        batch.pattern(pattern, confirm_all=body.confirm)


async def _batch(manager: Any, body: InvalidateRequest) -> Invalidation:
    if isinstance(manager, AsyncInvalidationManager):
        async with manager.batch(source=body.source) as batch:
            _fill(batch, body)
        assert batch.result is not None
        return batch.result

    def run() -> Invalidation:
        with manager.batch(source=body.source) as batch:
            _fill(batch, body)
        assert batch.result is not None
        return batch.result  # type: ignore[no-any-return]

    return await run_in_threadpool(run)
