"""AsyncBaseRepository: get, list, add, update, delete and transactions, with caching and invalidation.

Reads are cached (``get`` by id, ``list`` under the tags of its filters); writes go
through sessions whose hooks invalidate after commit, so a repository built on this one
gets correct invalidation for free, as does any code writing through the same sessions.
When those hooks have an event bus, each write also publishes its domain event
(``user.created``, ``user.updated`` with old values and changed fields, ``user.deleted``)
through the hooks' outbox, in the write's own transaction.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar, Generic, TypeVar

from sqlalchemy import CheckConstraint, select, tuple_

from freshcache._async.cache import AsyncCache
from freshcache._events import Event
from freshcache._exceptions import ConfigurationError, InvalidEntityError
from freshcache._keys import Template
from freshcache._kinds import require_kind
from freshcache._rules import Rules
from freshcache.integrations.sqlalchemy import _domain_events as domain_events
from freshcache.integrations.sqlalchemy._domain_events import register_entity_events
from freshcache.integrations.sqlalchemy._errors import database_errors
from freshcache.integrations.sqlalchemy._models import (
    check_tag_scheme,
    column_keys,
    column_value,
    entity_type_of,
    hooks_of,
    mapper_of,
    tag_scheme,
    values_of,
    writers_of,
)
from freshcache.integrations.sqlalchemy._orm import AsyncSession, async_sessionmaker
from freshcache.integrations.sqlalchemy._outbox import OUTBOX_TABLE
from freshcache.integrations.sqlalchemy._values import from_cached, to_cached

M = TypeVar("M")


class AsyncBaseRepository(Generic[M]):
    """``class UserRepository(AsyncBaseRepository[User]): model = User``.

    Instances returned are detached copies built from cached values: change them through
    ``update``, not by setting attributes. Its tags are those ``rules_from_models`` derives;
    construction fails if the rules of the hooks installed on ``sessions`` (install them
    first), or ``rules`` when given, do not touch each of them on every change.
    """

    model: ClassVar[type[Any]]

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        cache: AsyncCache,
        *,
        ttl: float | None = None,
        list_limit: int = 1000,
        rules: Rules | None = None,
    ) -> None:
        require_kind(sessions, async_sessionmaker, "AsyncBaseRepository")
        require_kind(cache, AsyncCache, "AsyncBaseRepository")
        if not hasattr(self, "model"):
            raise ConfigurationError(f"{type(self).__name__} must set model = <a mapped class>")
        self.sessions = sessions
        self.cache = cache
        self.ttl = ttl
        self.list_limit = list_limit
        self.entity_type = entity_type_of(self.model)
        self.columns = column_keys(self.model)
        mapper = mapper_of(self.model)
        self.primary_key = [
            mapper.get_property_by_column(column).key for column in mapper.primary_key
        ]
        # The tags come from the scheme rules_from_models writes, and are checked against the
        # rules of the hooks on these sessions (or ``rules``): none may go unbumped.
        scheme = tag_scheme(self.model)
        writers = [rules] if rules is not None else writers_of(sessions)
        if writers:
            check_tag_scheme(scheme, writers, f"{type(self).__name__} ({self.model.__name__})")
        self._entity_tag = Template(scheme.entity, kind="tag")
        self._bulk_tag = scheme.bulk
        # A list filtered by one foreign key is cached under the parent's list tag.
        self._list_tags = {key: Template(text, kind="tag") for key, text in scheme.lists.items()}
        installed = hooks_of(sessions)
        # The hooks on these sessions that publish events: each write adds its event to them.
        self._publishers = [hooks for hooks in installed if hooks.bus is not None]
        if self._publishers:
            register_entity_events(self.entity_type)
        # A constraint of these tables refusing a write is the client's conflict; one of the
        # outbox (the write's own bookkeeping) is the database's failure.
        tables = mapper.registry.metadata.tables.values()
        outboxes = {OUTBOX_TABLE} | {h.outbox.name for h in installed if h.outbox is not None}
        self._entity_tables = frozenset(table.name for table in tables) - outboxes
        self._checks = {
            constraint.name: table.name
            for table in tables
            for constraint in table.constraints
            if isinstance(constraint, CheckConstraint) and isinstance(constraint.name, str)
        }

    # Reads

    def _identity(self, id: Any) -> dict[str, Any]:
        values = (
            id
            if isinstance(id, Mapping)
            else dict(zip(self.primary_key, id if isinstance(id, tuple) else (id,), strict=True))
        )
        if set(values) != set(self.primary_key):
            raise InvalidEntityError(
                f"{self.entity_type} is identified by {', '.join(self.primary_key)}, not {id!r}"
            )
        return {key: column_value(self.model, key, value) for key, value in values.items()}

    def tag_for(self, id: Any) -> str:
        return self._entity_tag.format(self._identity(id))

    async def get(self, id: Any) -> M | None:
        """The entity with this primary key, from the cache when it can be; None if there is none.

        "Not found" is cached too: the insert that creates the row invalidates it.
        """
        identity = self._identity(id)
        tag = self._entity_tag.format(identity)
        values = await self.cache.get_or_load(
            tag,
            lambda: self._load(identity),
            tags=[tag, self._bulk_tag],
            ttl=self.ttl,
            cache_none=True,
        )
        return None if values is None else self._instance(values)

    async def _load(self, identity: Mapping[str, Any]) -> dict[str, Any] | None:
        async with self.sessions() as session:
            instance = await session.get(
                self.model, tuple(identity[key] for key in self.primary_key)
            )
            return None if instance is None else to_cached(self.model, values_of(instance))

    async def list(
        self, *, limit: int | None = None, offset: int = 0, after: Any = None, **filters: Any
    ) -> list[M]:
        """Entities whose columns equal ``filters``, in primary key order.

        ``after`` (a primary key) pages by keyset: only entities whose key sorts after it,
        so a page stays the same size however far it is, and a row inserted before it
        does not shift it. Cached under the parent's list tag when filtered by one foreign
        key (``user:2:challenges``), else under the type's wide tag (``challenge``).
        """
        self._check_columns(filters)
        start = None
        if after is not None:
            identity = self._identity(after)
            start = tuple(identity[key] for key in self.primary_key)
        limit = self.list_limit if limit is None else limit
        if not 0 < limit <= self.list_limit or offset < 0:
            raise InvalidEntityError(
                f"limit must be 1 to {self.list_limit} and offset 0 or more, not {limit} and {offset}"
            )
        filters = {key: column_value(self.model, key, value) for key, value in filters.items()}
        tags = [self.entity_type, self._bulk_tag]
        if len(filters) == 1 and next(iter(filters)) in self._list_tags:
            ((key, value),) = filters.items()
            if value is not None:
                tags = [self._list_tags[key].format({key: value}), self._bulk_tag]
        digest = hashlib.sha256(
            json.dumps([filters, limit, offset, start], sort_keys=True, default=str).encode()
        ).hexdigest()[:32]
        values = await self.cache.get_or_load(
            f"{self.entity_type}:list:{digest}",
            lambda: self._load_list(filters, limit, offset, start),
            tags=tags,
            ttl=self.ttl,
        )
        return [self._instance(item) for item in values]

    async def _load_list(
        self,
        filters: Mapping[str, Any],
        limit: int,
        offset: int,
        start: tuple[Any, ...] | None,
    ) -> builtins.list[dict[str, Any]]:
        order = [getattr(self.model, key) for key in self.primary_key]
        query = select(self.model).filter_by(**filters).order_by(*order).limit(limit).offset(offset)
        if start is not None:
            query = query.where(order[0] > start[0] if len(order) == 1 else tuple_(*order) > start)
        async with self.sessions() as session:
            instances = (await session.scalars(query)).all()
            return [to_cached(self.model, values_of(instance)) for instance in instances]

    def _instance(self, values: Mapping[str, Any]) -> M:
        return self.model(**from_cached(self.model, values))  # type: ignore[no-any-return]

    # Writes

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction, committed on a clean exit; the cache is invalidated after the commit.

        The database's errors leave it as freshcache's: a constraint of the entity tables
        violated (a unique key, a foreign key) is a :class:`ConflictError`, a value refused
        an :class:`InvalidEntityError`, anything else (the outbox's insert refused
        included) a :class:`DatabaseError`; the transaction is rolled back.
        """
        with database_errors(self.entity_type, self._entity_tables, self._checks):
            async with self.sessions() as session, session.begin():
                yield session

    def _check_columns(self, values: Mapping[str, Any]) -> None:
        unknown = set(values) - set(self.columns)
        if unknown:
            raise InvalidEntityError(
                f"{self.entity_type} has no column {', '.join(sorted(unknown))}; its columns are {', '.join(self.columns)}"
            )

    async def add(self, **values: Any) -> M:
        """Insert an entity; answers it with its generated keys."""
        self._check_columns(values)
        async with self.transaction() as session:
            instance = self.model(**values)
            session.add(instance)
            await session.flush()
            stored = values_of(instance)
            if self._publishers:
                self._publish(session, domain_events.created(self.entity_type, stored))
        return self._instance(stored)

    async def update(self, id: Any, /, **changes: Any) -> M | None:
        """Change some columns of an entity; None if there is none. The primary key cannot change."""
        self._check_columns(changes)
        identity = self._identity(id)
        moved = [
            key for key in self.primary_key if key in changes and changes[key] != identity[key]
        ]
        if moved:
            raise InvalidEntityError(
                f"{self.entity_type}'s primary key ({', '.join(moved)}) cannot change"
            )
        async with self.transaction() as session:
            instance = await session.get(
                self.model, tuple(identity[key] for key in self.primary_key), with_for_update=True
            )
            if instance is None:
                return None
            before = values_of(instance) if self._publishers else {}
            for key, value in changes.items():
                setattr(instance, key, value)
            await session.flush()
            stored = values_of(instance)
            if self._publishers:
                self._publish(session, domain_events.updated(self.entity_type, before, stored))
        return self._instance(stored)

    async def delete(self, id: Any) -> bool:
        """Delete an entity; False if there was none."""
        identity = self._identity(id)
        async with self.transaction() as session:
            instance = await session.get(
                self.model, tuple(identity[key] for key in self.primary_key)
            )
            if instance is None:
                return False
            if self._publishers:
                self._publish(session, domain_events.deleted(self.entity_type, values_of(instance)))
            await session.delete(instance)
        return True

    def _publish(self, session: AsyncSession, event: Event | None) -> None:
        if event is not None:
            for hooks in self._publishers:
                hooks.publish_in(session, event)
