"""AsyncCache: the policy of cache-aside reads, fills and invalidation over a backend.

It composes the parts, each in a module of its own: single-flight in this process
(``flight``), the lease protocol of a miss across processes (``lease``), invalidations
(``invalidation``), reads that cannot trust the backend (``degraded``), the ``cached``
decorator (``cached``) and the checks of its options (``options``).
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, overload

from freshcache._async.backends.base import AsyncBackend
from freshcache._async.batching import AsyncTagBatcher
from freshcache._async.cached import AsyncCachedFunction, decorator
from freshcache._async.degraded import AsyncDegradedReads
from freshcache._async.flight import AsyncFlights
from freshcache._async.guard import AsyncBackendGuard
from freshcache._async.invalidation import AsyncCacheInvalidation
from freshcache._async.lease import AsyncLeasedLoad
from freshcache._async.options import (
    check_call,
    check_flags,
    check_metrics,
    check_ttl_jitter,
    split_url_options,
)
from freshcache._calls import AsyncBackgroundCalls, async_check_loader, async_load
from freshcache._durations import Seconds, seconds
from freshcache._entries import MISSING, FillStatus, new_token
from freshcache._exceptions import (
    BackendError,
    ConfigurationError,
    InvalidKeyError,
    SerializationError,
)
from freshcache._inspection import KeyState, TagState
from freshcache._keys import validate_key, validate_tag, validate_tags
from freshcache._kinds import require_kind
from freshcache._metrics import CacheMetrics
from freshcache._synchronization import AsyncCriticalSection

# AsyncCachedFunction lives with the decorator; imported from here as it always was.
__all__ = ["AsyncCache", "AsyncCachedFunction"]

T = TypeVar("T")
P = ParamSpec("P")


class AsyncCache(AsyncCacheInvalidation, AsyncDegradedReads):
    """A cache-aside cache whose fills can never store data older than an invalidation.

    Reads degrade to the loader when the backend fails (counted in ``backend_errors``);
    pass ``raise_errors=True`` to see those failures instead. Invalidations always raise
    :class:`BackendError` on failure (:class:`BackendUnavailableError`, without asking,
    while the circuit breaker is open): losing one silently would serve stale data, and
    the invalidation manager queues and retries them for writers.
    """

    def __init__(
        self,
        backend: AsyncBackend,
        *,
        default_ttl: Seconds = 300.0,
        ttl_jitter: float = 0.0,
        lease_ttl: Seconds = 10.0,
        lease_wait: Seconds | None = None,
        cache_none: bool = False,
        negative_ttl: Seconds | None = None,
        raise_errors: bool = False,
        breaker_cooldown: Seconds = 0.5,
        metrics: CacheMetrics | None = None,
    ) -> None:
        require_kind(backend, AsyncBackend, "AsyncCache")
        default_ttl = seconds("default_ttl", default_ttl)
        lease_ttl = seconds("lease_ttl", lease_ttl)
        if negative_ttl is not None:
            negative_ttl = seconds("negative_ttl", negative_ttl)
        if lease_wait is not None:
            lease_wait = seconds("lease_wait", lease_wait, zero_allowed=True)
        breaker_cooldown = seconds("breaker_cooldown", breaker_cooldown)
        ttl_jitter = check_ttl_jitter(ttl_jitter)
        check_flags(cache_none=cache_none, raise_errors=raise_errors)
        metrics = check_metrics(metrics)
        self.backend = backend
        # A backend answering from memory reads without a coroutine (see AsyncBackend.get_now).
        self._get_now = backend.get_now
        self.default_ttl = default_ttl
        self.ttl_jitter = ttl_jitter
        self.lease_ttl = lease_ttl
        self.lease_wait = lease_ttl if lease_wait is None else lease_wait
        self.cache_none = cache_none
        self.negative_ttl = negative_ttl
        self.raise_errors = raise_errors
        self.metrics = metrics
        self._single_flight = AsyncFlights(self.metrics)
        self._flights = self._single_flight.running  # the hit path checks it without a call
        self._get_count = 0
        self._batcher = AsyncTagBatcher(backend)
        self._background = AsyncBackgroundCalls()  # lease releases that outlive a cancellation
        self._checked_ttl: object = None  # the last per-call ttl found good (see _check_ttl)
        # Every backend call passes the guard, which knows the backend's health (see _breaker).
        self.guard = AsyncBackendGuard(backend, self.metrics, breaker_cooldown)
        self.breaker = self.guard.breaker  # the hit path checks breaker.open_until alone
        # While invalidations of this process wait in a retry queue, the cache may hold
        # entries they would drop: reads go to the loader until every queue (of every
        # manager on this cache) has drained.
        self.reads_suspended = False
        self._read_suspenders: set[object] = set()
        self._suspension = AsyncCriticalSection()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> AsyncCache:
        """A cache on ``memory://`` or ``redis://host:port/db`` (see ``backend_from_url``).

        ``options`` are the cache's (``default_ttl``, ``lease_ttl`` ...) and the backend's
        (``max_entries`` for memory, ``namespace`` for Redis ...); any other is an error.
        """
        from freshcache._async.backends import registry

        backend_options, cache_options = split_url_options(cls, url, options)
        return cls(registry.async_backend_from_url(url, **backend_options), **cache_options)

    async def __aenter__(self) -> AsyncCache:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._background.wait()
        await self.backend.aclose()

    # Reads

    async def get(self, key: str, default: Any = None, *, tags: Sequence[str] | None = None) -> Any:
        """The cached value of ``key``, or ``default`` on a miss."""
        if tags is not None:
            if tags.__class__ is list or tags.__class__ is tuple:
                try:
                    "".join(tags)  # every tag a str before the backend sees one
                except TypeError:
                    validate_tags(tags)  # raises, naming the tag
            else:
                tags = validate_tags(tags)
        value = await self._lookup(key, tags)
        if value is MISSING:
            validate_key(key)  # a bad key can never hit, so only misses pay for the check
            return default
        return value

    async def _lookup(self, key: str, tags: Sequence[str] | None) -> Any:
        if key.__class__ is not str:
            validate_key(key)  # raises: a key must be a str before it goes near the backend
        metrics = self.metrics
        self._get_count += 1
        timed = self._get_count % metrics.get_sample_every == 0
        started = time.perf_counter() if timed else 0.0
        value: Any
        if self._skip_read():
            value = MISSING
        else:
            get_now = self._get_now
            try:
                if get_now is None:
                    value = await self.backend.get(key, tags)
                else:
                    value = get_now(key, tags)
                self._backend_ok()
            except (BackendError, SerializationError) as exc:
                self._read_failed("get", exc)
                value = MISSING
        if timed:
            metrics.get_latency.observe(time.perf_counter() - started)
        if value is MISSING:
            metrics.misses += 1
        else:
            metrics.hits += 1
        return value

    async def _read_quietly(self, key: str, tags: Sequence[str]) -> Any:
        """A read that counts nothing (the caller was counted already); failures read as misses."""
        if self._skip_read():
            return MISSING
        get_now = self._get_now
        try:
            value = await self.backend.get(key, tags) if get_now is None else get_now(key, tags)
            self._backend_ok()
            return value
        except (BackendError, SerializationError) as exc:
            self._read_failed("get", exc)
            return MISSING

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """The hits among ``keys``, as a dict; misses are left out."""
        if isinstance(keys, str):
            raise InvalidKeyError(f"keys must be a list of strings, not the string {keys!r}")
        keys = [validate_key(key) for key in keys]
        try:
            found = {} if self._skip_read() else await self.backend.get_many(keys)
            self._backend_ok()
        except (BackendError, SerializationError) as exc:
            self._read_failed("get_many", exc)
            found = {}
        self.metrics.hits += len(found)
        self.metrics.misses += len(keys) - len(found)
        return found

    # Writes

    async def set(
        self, key: str, value: Any, *, tags: Iterable[str] = (), ttl: Seconds | None = None
    ) -> bool:
        """Store ``value`` under the current versions of ``tags``.

        The data behind ``value`` was read before this call, so an invalidation between
        that read and this call goes unseen: prefer :meth:`get_or_load`, which reads the
        versions before the load. False when not stored (a tag is held by a writer, or
        the backend failed).
        """
        key = validate_key(key)
        tag_list = validate_tags(tags)
        seconds_to_live = self._ttl(ttl)
        if self._skip_read():
            return False
        try:
            ticket = await self.backend.begin_fill(key, tag_list, token=new_token(), lease_ttl=None)
            if ticket.status is not FillStatus.ACQUIRED:
                return False
            stored = await self.backend.fill(
                key, value, tag_list, ticket.versions, ttl=seconds_to_live, token=None
            )
        except BackendError as exc:
            self._backend_failed("set", exc)
            return False
        self.metrics.sets += stored
        return stored

    async def set_many(
        self, items: Mapping[str, Any], *, tags: Iterable[str] = (), ttl: Seconds | None = None
    ) -> int:
        """Store every item under ``tags``; how many were stored."""
        if not isinstance(items, Mapping):
            raise ConfigurationError(
                f"set_many takes a mapping of keys to values, not {type(items).__name__}"
            )
        tag_list = validate_tags(tags)
        for key in items:
            validate_key(key)
        if ttl is not None:
            ttl = seconds("ttl", ttl)
        stored = 0
        for key, value in items.items():
            stored += await self.set(key, value, tags=tag_list, ttl=ttl)
        return stored

    async def delete(self, *keys: str) -> int:
        """Delete entries by key; how many existed. Same as :meth:`invalidate_keys`."""
        return await self.invalidate_keys(keys)

    # Loading

    @overload
    async def get_or_load(
        self,
        key: str,
        loader: Callable[[], Awaitable[T]],
        *,
        tags: Iterable[str] = ...,
        ttl: Seconds | None = ...,
        cache_none: bool | None = ...,
    ) -> T: ...

    # The sync twin (where Awaitable[T] becomes T) repeats this overload: the ignore is its.
    @overload
    async def get_or_load(  # type: ignore[overload-cannot-match, unused-ignore]
        self,
        key: str,
        loader: Callable[[], T],
        *,
        tags: Iterable[str] = ...,
        ttl: Seconds | None = ...,
        cache_none: bool | None = ...,
    ) -> T: ...

    async def get_or_load(
        self,
        key: str,
        loader: Callable[[], Any],
        *,
        tags: Iterable[str] = (),
        ttl: Seconds | None = None,
        cache_none: bool | None = None,
    ) -> Any:
        """The cached value of ``key``; on a miss, ``loader()``'s result, cached under ``tags``.

        Concurrent misses on one key run ``loader`` once: in this process they wait for
        the same call; across processes, for the holder of the key's lease, at most
        ``lease_wait`` seconds, after which they load without filling. A holder that
        dies loses its lease after ``lease_ttl`` and another caller takes over; one that
        fails or is cancelled gives it up at once.
        """
        # Every argument is checked before the backend is asked, in a few comparisons on
        # the hit path (isinstance with a tuple alone would cost more than all of them).
        if tags.__class__ is list or tags.__class__ is tuple:
            tag_list: Sequence[str] = tags
            try:
                "".join(tag_list)  # every tag a str before the backend sees one
            except TypeError:
                validate_tags(tag_list)  # raises, naming the tag
        else:
            tag_list = validate_tags(tags)
        if ttl is not None and ttl is not self._checked_ttl:
            ttl = self._check_ttl(ttl)
        if (cache_none is not None and cache_none.__class__ is not bool) or not callable(loader):
            check_call(loader, cache_none)  # type: ignore[unreachable]  # for untyped callers
        flights = self._flights
        if flights and key.__class__ is str and key in flights:
            # A load of this key is already running here: join it without asking the backend.
            self.metrics.misses += 1
        elif (
            (self._get_count + 1) % self.metrics.get_sample_every
            and key.__class__ is str
            and not self.breaker.open_until
            and not self.reads_suspended
        ):
            # The hit path, inline: through _lookup (one coroutine more) a memory hit costs
            # a quarter more CPU (1.65 against 1.32 us async, 1.53 against 1.27 us sync,
            # best of 30 timeit runs). Same counting as _lookup, minus the timing.
            self._get_count += 1
            get_now = self._get_now
            try:
                if get_now is None:
                    value = await self.backend.get(key, tag_list)
                else:
                    value = get_now(key, tag_list)  # a memory read: no coroutine to await
            except (BackendError, SerializationError) as exc:
                self._read_failed("get", exc)
                value = MISSING
            if value is not MISSING:
                self.metrics.hits += 1
                return value
            self.metrics.misses += 1
        else:
            value = await self._lookup(key, tag_list)
            if value is not MISSING:
                return value
        return await self._load_missed(key, loader, tag_list, ttl, cache_none)

    async def _load_missed(
        self,
        key: str,
        loader: Callable[[], Any],
        tags: Sequence[str],
        ttl: Seconds | None,
        cache_none: bool | None,
    ) -> Any:
        """A miss of get_or_load: one load per key in this process, under the key's lease.

        A method of its own, away from the hit path: its closures would turn every local
        of get_or_load into a cell, which costs each hit about 10% in memory.
        """
        key = validate_key(key)
        tag_list = validate_tags(tags)
        async_check_loader(loader)
        seconds_to_live = None if ttl is None else seconds("ttl", ttl)
        return await self._single_flight.load(
            key,
            lambda flight: AsyncLeasedLoad(
                self, key, loader, tag_list, seconds_to_live, cache_none, flight
            ).run(),
            arrived=time.monotonic(),
            patience=self.lease_wait + self.lease_ttl,  # the leader waits lease_wait, then loads
            alone=lambda: self._load(loader),
            vouch=lambda: self._read_quietly(key, tag_list),
        )

    async def _load(self, loader: Callable[[], Any]) -> Any:
        metrics = self.metrics
        metrics.loads += 1
        started = time.perf_counter()
        try:
            return await async_load(loader)
        except BaseException:
            metrics.load_errors += 1
            raise
        finally:
            metrics.load_latency.observe(time.perf_counter() - started)

    def cached(
        self,
        *,
        key: str,
        tags: Iterable[str] = (),
        ttl: Seconds | None = None,
        cache_none: bool | None = None,
    ) -> Callable[[Callable[P, Awaitable[T]]], AsyncCachedFunction[P, T]]:
        """Cache a function's results under ``key`` and ``tags``, templates filled from its arguments.

        ``@cache.cached(key="user:{user_id}:progress", tags=["user:{user_id}"])``. The
        wrapper has ``key_for(*args, **kwargs)`` and ``invalidate(*args, **kwargs)``.
        AsyncCache.cached wraps an ``async def`` and Cache.cached a plain function; the
        other kind is refused when decorated.
        """
        return decorator(self, key=key, tags=tags, ttl=ttl, cache_none=cache_none)

    # Helpers

    def _check_ttl(self, ttl: Seconds) -> float:
        """A per-call ttl in seconds, or ConfigurationError before any I/O.

        A ttl is a constant in practice: the last plain number found good is remembered
        (by identity: the same int or float object cannot change), so a hit pays one
        comparison for it.
        """
        amount = seconds("ttl", ttl)
        if ttl.__class__ is int or ttl.__class__ is float:
            self._checked_ttl = ttl
        return amount

    def _ttl(self, ttl: Seconds | None) -> float:
        """The seconds an entry lives: ``ttl`` (checked) or the default, jittered."""
        amount = self.default_ttl if ttl is None else seconds("ttl", ttl)
        if self.ttl_jitter:
            amount *= 1.0 - random.random() * self.ttl_jitter
        return amount

    # Inspection: why a key would miss, for an operator (read-only, through the guard)

    async def inspect_key(self, key: str) -> KeyState:
        """``key``'s entry against its tags' versions now; BackendError when the backend fails."""
        validate_key(key)
        return await self.guard.call(lambda: self.backend.describe_key(key))

    async def inspect_tag(self, tag: str) -> TagState:
        """``tag``'s current version and pending holders; BackendError when the backend fails."""
        validate_tag(tag)
        return await self.guard.call(lambda: self.backend.describe_tag(tag))
