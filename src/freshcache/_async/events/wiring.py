"""Event handlers that invalidate: domain events wired to the manager's entity invalidations.

The founding design's CacheInvalidationEventHandlers, as one call::

    invalidation_handlers(bus, manager, {EventTypes.USER_UPDATED: "user", ...})

An event's data is read the way the SQLAlchemy hooks record a change: ``{"new": {...},
"old": {...}, "changed": [...]}`` for an update (either side may be absent: an insert has
only ``new``, a delete only ``old``), or the entity's values themselves, which are taken as
what it was (every rule of the type that they can format fires). So an event carrying old
and new values invalidates as the hooks would: a challenge moved from user 1 to user 2
drops both users' lists, and a rule with ``fields`` fires only when one of them changed.
A mapping value may also be a function ``event -> iterable of EntityChange``.

Handlers are idempotent, as at-least-once delivery requires: invalidating twice is
invalidating once, and more: once an event's invalidation is applied, its id is recorded
in the cache for ``dedupe_ttl`` seconds, and a redelivery of it (its consumer died before
acknowledging) does nothing, so an entry filled since stays. An invalidation the manager
could not apply (it queued it) fails the handler, so that the event is delivered again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from freshcache._async.events.bus import AsyncEventBus
from freshcache._async.manager import AsyncInvalidationManager
from freshcache._events import Event, EventTypes, InvalidEventError
from freshcache._exceptions import BackendError, ConfigurationError
from freshcache._invalidations import EntityChange

ChangesOf = Callable[[Event], Iterable[EntityChange]]
InvalidationMapping = Mapping[str, "str | ChangesOf"]

_SHAPE_KEYS = frozenset({"new", "old", "changed"})


def entity_changes(entity_type: str, event: Event) -> list[EntityChange]:
    """The change an event's data describes (see the module's docstring)."""
    data = event.data
    if not _SHAPE_KEYS.intersection(data):
        return [EntityChange(entity_type, old=data)]
    new, old, changed = data.get("new"), data.get("old"), data.get("changed")
    for what, value in (("new", new), ("old", old)):
        if value is not None and not isinstance(value, Mapping):
            raise InvalidEventError(f"event {event.describe()}: data[{what!r}] must be an object")
    if new is None and old is None:
        raise InvalidEventError(
            f"event {event.describe()}: data has neither 'new' nor 'old' values"
        )
    if changed is not None and not isinstance(changed, list):
        raise InvalidEventError(
            f"event {event.describe()}: data['changed'] must be a list of field names"
        )
    return [EntityChange(entity_type, new=new, old=old, changed=changed)]


def invalidation_handlers(
    bus: AsyncEventBus,
    manager: AsyncInvalidationManager,
    mapping: InvalidationMapping,
    *,
    dedupe_ttl: float = 3600.0,
) -> Callable[[], None]:
    """Subscribe one invalidating handler per event type in ``mapping``; returns a function that unsubscribes them."""
    if not dedupe_ttl > 0:
        raise ConfigurationError(
            f"dedupe_ttl must be a positive number of seconds, not {dedupe_ttl}"
        )
    handlers: dict[str, Callable[[Event], Any]] = {}
    for event_type, target in mapping.items():
        EventTypes.require(event_type)
        if isinstance(target, str):
            manager.rules.require(target)
            handlers[event_type] = _invalidator(manager, _changes_of(target), dedupe_ttl)
        elif callable(target):
            handlers[event_type] = _invalidator(manager, target, dedupe_ttl)
        else:
            raise ConfigurationError(
                f"{event_type} maps to {target!r}: give an entity type or a function event -> changes"
            )
    for event_type, handler in handlers.items():
        bus.subscribe(event_type, handler)

    def unsubscribe() -> None:
        for event_type, handler in handlers.items():
            bus.unsubscribe(event_type, handler)

    return unsubscribe


def _changes_of(entity_type: str) -> ChangesOf:
    def changes(event: Event) -> list[EntityChange]:
        return entity_changes(entity_type, event)

    return changes


def _invalidator(
    manager: AsyncInvalidationManager, changes_of: ChangesOf, dedupe_ttl: float
) -> Callable[[Event], Any]:
    cache = manager.cache

    async def invalidate_for_event(event: Event) -> None:
        applied_key = f"freshcache.event-applied:{event.id}"
        if await cache.get(applied_key) is not None:
            return  # a redelivery of an event whose invalidation was applied
        invalidation = await manager.invalidate_entities(
            changes_of(event), source=f"event:{event.type}"
        )
        if not invalidation.applied:
            raise BackendError(
                f"the invalidation for {event.describe()} was queued, not applied: deliver it again"
            )
        await cache.set(applied_key, True, ttl=dedupe_ttl)

    return invalidate_for_event
