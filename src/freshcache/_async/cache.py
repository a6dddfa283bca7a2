"""AsyncCache: the policy of cache-aside reads, fills and invalidation over a backend."""

from __future__ import annotations

import difflib
import functools
import inspect
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, ParamSpec, Protocol, TypeVar, cast, overload

from freshcache._async.backends.base import AsyncBackend
from freshcache._async.batching import AsyncTagBatcher
from freshcache._async.guard import AsyncBackendGuard
from freshcache._calls import (
    AsyncBackgroundCalls,
    async_check_decorated,
    async_check_loader,
    async_load,
)
from freshcache._durations import Seconds, seconds
from freshcache._entries import MISSING, FillStatus, new_token
from freshcache._exceptions import (
    BackendError,
    ConfigurationError,
    InvalidKeyError,
    SerializationError,
)
from freshcache._inspection import KeyState, TagState
from freshcache._keys import Template, validate_key, validate_pattern, validate_tag, validate_tags
from freshcache._kinds import require_kind
from freshcache._metrics import CacheMetrics
from freshcache._synchronization import AsyncCriticalSection, AsyncEvent, async_sleep

log = logging.getLogger("freshcache")

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
P = ParamSpec("P")

_FIRST_POLL = 0.002
_MAX_POLL = 0.05


class _Flight:
    """One load in progress in this process; the callers that arrive meanwhile wait on it.

    ``snapshot_at`` is when the leader last read the tag versions (before its database
    read). A caller that arrived before then may take the value as it is; one that
    arrived later may not: a write could have finished in between.
    """

    __slots__ = ("done", "error", "snapshot_at", "value")

    def __init__(self) -> None:
        self.done = AsyncEvent()
        self.value: Any = MISSING
        self.error: BaseException | None = None
        self.snapshot_at = math.inf


class AsyncCachedFunction(Protocol[P, T_co]):
    """What :meth:`AsyncCache.cached` returns: the function, cached, with its key and invalidation."""

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> T_co: ...

    def key_for(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The cache key of the call with these arguments."""
        ...

    async def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> int:
        """Delete the entry of the call with these arguments; 1 if it existed."""
        ...


class AsyncCache:
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
        if not (
            isinstance(ttl_jitter, (int, float))
            and not isinstance(ttl_jitter, bool)
            and 0.0 <= ttl_jitter < 1.0
        ):
            raise ConfigurationError(f"ttl_jitter is a fraction in [0, 1), not {ttl_jitter!r}")
        for name, flag in (("cache_none", cache_none), ("raise_errors", raise_errors)):
            if not isinstance(flag, bool):
                raise ConfigurationError(f"{name} must be True or False, not {flag!r}")
        if metrics is not None and not isinstance(metrics, CacheMetrics):
            raise ConfigurationError(
                f"metrics must be a CacheMetrics, not {type(metrics).__name__}"
            )
        self.backend = backend
        self.default_ttl = default_ttl
        self.ttl_jitter = ttl_jitter
        self.lease_ttl = lease_ttl
        self.lease_wait = lease_ttl if lease_wait is None else lease_wait
        self.cache_none = cache_none
        self.negative_ttl = negative_ttl
        self.raise_errors = raise_errors
        self.metrics = metrics if metrics is not None else CacheMetrics()
        self._flights: dict[str, _Flight] = {}
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

        backend_accepts = registry.backend_options(url)
        cache_accepts = set(inspect.signature(cls).parameters) - {"backend"}
        unknown = set(options) - cache_accepts - backend_accepts
        if unknown:
            hints = [
                f"{name} (did you mean {close[0]}?)" if close else name
                for name in sorted(unknown)
                for close in [
                    [known for known in sorted(cache_accepts) if name in known.split("_")]
                    or difflib.get_close_matches(name, cache_accepts | backend_accepts, 1)
                ]
            ]
            raise ConfigurationError(
                f"{cls.__name__}.from_url({url.split('://')[0]}://...) does not take "
                f"{', '.join(hints)}; the cache takes {', '.join(sorted(cache_accepts))}, "
                f"its backend {', '.join(sorted(backend_accepts))}"
            )
        backend_options = {k: options.pop(k) for k in list(options) if k in backend_accepts}
        return cls(registry.async_backend_from_url(url, **backend_options), **options)

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
            try:
                value = await self.backend.get(key, tags)
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
        try:
            value = await self.backend.get(key, tags)
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
            _check_call(loader, cache_none)  # type: ignore[unreachable]  # for untyped callers
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
            # The hit path, flattened: one coroutine fewer than _lookup costs measurably
            # against a Redis round trip. Same counting as _lookup, minus the timing.
            self._get_count += 1
            try:
                value = await self.backend.get(key, tag_list)
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
        key = validate_key(key)
        tag_list = validate_tags(tag_list)
        async_check_loader(loader)
        seconds_to_live = None if ttl is None else seconds("ttl", ttl)
        arrived = time.monotonic()
        flight = _Flight()
        while True:
            # setdefault is atomic, so exactly one caller (task or thread) leads the load.
            leader = flights.setdefault(key, flight)
            if leader is flight:
                break
            self.metrics.inflight_waits += 1
            # The leader waits at most lease_wait for another process, then loads.
            if not await leader.done.wait(self.lease_wait + self.lease_ttl):
                self.metrics.lease_timeouts += 1
                return await self._load(loader)
            if leader.error is None:
                if arrived <= leader.snapshot_at:
                    return leader.value
                # The leader read its data before we arrived; a write may have finished in
                # between. Take its value only as the cache vouches for it now.
                value = await self._read_quietly(key, tag_list)
                if value is not MISSING:
                    return value
                continue  # not vouched for: lead (or join) a load that starts after us
            if isinstance(leader.error, Exception):
                raise leader.error
            # The leader was cancelled or interrupted, not us: lead the next attempt.
        try:
            flight.value = await self._load_and_fill(
                key, loader, tag_list, seconds_to_live, cache_none, flight
            )
            return flight.value
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            if self._flights.get(key) is flight:
                del self._flights[key]
            flight.done.set()

    async def _load_and_fill(
        self,
        key: str,
        loader: Callable[[], Any],
        tags: Sequence[str],
        ttl: float | None,
        cache_none: bool | None,
        flight: _Flight,
    ) -> Any:
        token = new_token()
        deadline = time.monotonic() + self.lease_wait
        poll = _FIRST_POLL
        waited = False
        dropped_undecodable = False
        while True:
            flight.snapshot_at = time.monotonic()  # what is loaded next is read after this
            if self._skip_read():
                return await self._load(loader)
            try:
                ticket = await self.backend.begin_fill(
                    key, tags, token=token, lease_ttl=self.lease_ttl
                )
                self._backend_ok()
            except (BackendError, SerializationError) as exc:
                if isinstance(exc, BackendError):
                    # It may have failed after the script ran (a timeout): the lease may be ours.
                    self._release_soon(key, token)
                self._read_failed("begin_fill", exc)
                if isinstance(exc, SerializationError) and not dropped_undecodable:
                    # The entry there cannot be decoded: drop it and fill over it, once.
                    dropped_undecodable = True
                    try:
                        await self.backend.delete([key])
                        continue
                    except BackendError as failure:
                        self._backend_failed("delete", failure)
                return await self._load(loader)
            except BaseException:
                # Cancelled while the script was in flight: it may run all the same and take
                # the lease for a token nobody else knows.
                self._release_soon(key, token)
                raise
            if ticket.status is FillStatus.HIT:
                return ticket.value  # filled since our read: no second load
            if ticket.status is FillStatus.PENDING:
                self.metrics.pending_bypasses += 1
                return await self._load(loader)
            if ticket.status is FillStatus.ACQUIRED:
                return await self._load_holding_lease(
                    key, loader, tags, ticket.versions, token, ttl, cache_none
                )
            # Another process is loading: wait for its fill, then read it.
            if not waited:
                self.metrics.lease_waits += 1
                waited = True
            if time.monotonic() >= deadline:
                self.metrics.lease_timeouts += 1
                return await self._load(loader)
            await async_sleep(poll)
            poll = min(poll * 1.5, _MAX_POLL)
            flight.snapshot_at = time.monotonic()
            if self._skip_read():
                return await self._load(loader)
            try:
                value = await self.backend.get(key, tags)
            except (BackendError, SerializationError) as exc:
                self._read_failed("get", exc)
                return await self._load(loader)
            if value is not MISSING:
                return value

    async def _load_holding_lease(
        self,
        key: str,
        loader: Callable[[], Any],
        tags: Sequence[str],
        versions: Sequence[str],
        token: str,
        ttl: float | None,
        cache_none: bool | None,
    ) -> Any:
        """Load and fill; every way out of here but a fill that ran leaves the lease free."""
        try:
            value = await self._load(loader)
        except Exception:
            await self._release(key, token)
            raise
        except BaseException:
            self._release_soon(key, token)  # cancelled: the caller has no time to wait for it
            raise
        if value is None and not (self.cache_none if cache_none is None else cache_none):
            await self._release(key, token)
            return value
        if value is None and self.negative_ttl is not None and ttl is None:
            ttl = self.negative_ttl
        try:
            stored = await self.backend.fill(
                key, value, tags, versions, ttl=self._ttl(ttl), token=token
            )
        except BackendError as exc:
            self._release_soon(key, token)  # the fill may never have reached the server
            self._backend_failed("fill", exc)
            return value
        except SerializationError as exc:
            self._value_refused(exc)  # the backend freed the lease when it refused the value
            return value
        except Exception:
            await self._release(key, token)  # refused before any I/O: a value it cannot encode
            raise
        except BaseException:
            self._release_soon(key, token)
            raise
        if stored:
            self.metrics.sets += 1
        else:
            self.metrics.stale_fills_rejected += 1
        return value

    async def _release(self, key: str, token: str) -> None:
        try:
            await self.backend.release_lease(key, token)
        except BackendError as exc:
            self._backend_failed("release_lease", exc)

    def _release_soon(self, key: str, token: str) -> None:
        """Release ``token``'s lease (a no-op if not held) without holding up the caller.

        The caller was cancelled, or the backend just failed it: another round trip now
        could cost it a full timeout. Until the release lands, every caller of the key in
        every process would wait for a loader that stopped.
        """
        self._background.start(lambda: self._release_quietly(key, token))

    async def _release_quietly(self, key: str, token: str) -> None:
        try:
            await self.backend.release_lease(key, token)
        except BackendError as exc:
            # Counted already: the failure that led here. The lease lapses after lease_ttl.
            log.info("release_lease of %r failed on %s: %s", key, self.backend.name, exc)

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
        key_template = Template(key, kind="key")
        if isinstance(tags, str):
            raise InvalidKeyError(f"tags must be a list of strings, not the string {tags!r}")
        tag_templates = [Template(tag, kind="tag") for tag in tags]
        seconds_to_live = None if ttl is None else seconds("ttl", ttl)
        if cache_none is not None and not isinstance(cache_none, bool):
            raise ConfigurationError(f"cache_none must be True, False or None, not {cache_none!r}")

        def decorate(function: Callable[P, Awaitable[T]]) -> AsyncCachedFunction[P, T]:
            async_check_decorated(function, f"cached(key={key!r})")
            signature = inspect.signature(function)
            wanted = {*key_template.fields, *(f for t in tag_templates for f in t.fields)}
            unknown = wanted.difference(signature.parameters)
            if unknown:
                raise ConfigurationError(
                    f"cached({key!r}) on {function.__qualname__}: the templates name "
                    f"{', '.join(sorted(unknown))}, which are not parameters of the function"
                )

            def arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
                bound = signature.bind(*args, **kwargs)
                bound.apply_defaults()
                return bound.arguments

            def key_for(*args: P.args, **kwargs: P.kwargs) -> str:
                return key_template.format(arguments(args, kwargs))

            @functools.wraps(function)
            async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
                values = arguments(args, kwargs)
                return await self.get_or_load(
                    key_template.format(values),
                    lambda: function(*args, **kwargs),
                    tags=[template.format(values) for template in tag_templates],
                    ttl=seconds_to_live,
                    cache_none=cache_none,
                )

            async def invalidate(*args: P.args, **kwargs: P.kwargs) -> int:
                return await self.invalidate_keys([key_for(*args, **kwargs)])

            wrapper.key_for = key_for  # type: ignore[attr-defined]
            wrapper.invalidate = invalidate  # type: ignore[attr-defined]
            return cast("AsyncCachedFunction[P, T]", wrapper)

        return decorate

    # Invalidation: failures raise, they are never swallowed here

    async def invalidate_tags(self, tags: Iterable[str]) -> None:
        """Give each tag a new version: every entry that depends on it is a miss from now on.

        Concurrent calls share backend operations (group commit); each returns once its
        own tags are applied.
        """
        tag_list = validate_tags(tags)
        if not tag_list:
            return
        started = time.perf_counter()
        try:
            await self.guard.call(lambda: self._batcher.invalidate(tag_list))
        finally:
            self.metrics.invalidate_latency.observe(time.perf_counter() - started)
        self.metrics.tag_invalidations += len(tag_list)

    async def invalidate_keys(self, keys: Iterable[str]) -> int:
        """Delete entries by key; how many existed."""
        if isinstance(keys, str):
            raise InvalidKeyError(f"keys must be a list of strings, not the string {keys!r}")
        key_list = [validate_key(key) for key in keys]
        if not key_list:
            return 0
        started = time.perf_counter()
        try:
            deleted = await self.guard.call(lambda: self.backend.delete(key_list))
        finally:
            self.metrics.invalidate_latency.observe(time.perf_counter() - started)
        self.metrics.key_invalidations += len(key_list)
        return deleted

    async def invalidate_pattern(self, pattern: str, *, confirm_all: bool = False) -> int:
        """Delete every entry whose key matches the glob ``pattern``: O(keys), prefer tags.

        ``"*"`` alone matches everything and needs ``confirm_all=True``.
        """
        pattern = validate_pattern(pattern, confirm_all=confirm_all)
        started = time.perf_counter()
        try:
            deleted = await self.guard.call(lambda: self.backend.delete_pattern(pattern))
        finally:
            self.metrics.invalidate_latency.observe(time.perf_counter() - started)
        self.metrics.pattern_invalidations += 1
        return deleted

    # Two phases (strict mode): the invalidation manager's begin, commit and abort

    async def mark_pending(self, tags: Iterable[str], *, token: str, ttl: float) -> None:
        """Hold ``tags`` pending under ``token`` for at most ``ttl`` s: readers bypass them, fills are refused."""
        tag_list = validate_tags(tags)
        ttl = seconds("ttl", ttl)
        if tag_list:
            await self.guard.call(lambda: self.backend.mark_pending(tag_list, token=token, ttl=ttl))

    async def clear_pending(self, tags: Iterable[str], *, token: str, committed: bool) -> None:
        """``token`` lets go of ``tags``: new versions if ``committed``, else the old ones back."""
        tag_list = validate_tags(tags)
        if tag_list:
            await self.guard.call(
                lambda: self.backend.clear_pending(tag_list, token=token, committed=committed)
            )

    async def clear(self) -> None:
        """Remove every entry, version and lease of this cache's namespace."""
        await self.guard.call(self.backend.clear)

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

    def suspend_reads(self, holder: object = None) -> None:
        """Read past the cache (loader, no fill) until ``holder`` resumes; invalidations go on.

        Each retry queue holding invalidations is a holder: reads resume when the last of
        them (of every manager on this cache) lets go.
        """
        with self._suspension:
            self._read_suspenders.add(holder)
            self.reads_suspended = True

    def resume_reads(self, holder: object = None) -> None:
        with self._suspension:
            self._read_suspenders.discard(holder)
            self.reads_suspended = bool(self._read_suspenders)

    def _skip_read(self) -> bool:
        """True when a read must not trust the backend: breaker open, or reads suspended."""
        if self.reads_suspended:
            self.metrics.backend_skips += 1
            return True
        return self.guard.skip()

    def _skip_backend(self) -> bool:
        """True while the breaker is open after a failure: the call is not sent (and counted)."""
        return self.guard.skip()

    def _backend_ok(self) -> None:
        if self.breaker.open_until:
            self.guard.succeeded()

    def _refuse_while_open(self) -> None:
        self.guard.admit()

    def _read_failed(self, operation: str, exc: BackendError | SerializationError) -> None:
        """A read that failed: the backend (breaker, counted) or an entry that cannot be decoded.

        An undecodable entry (a rotated pickle key, a changed serializer, a tampered value)
        reads as a miss, and the next fill overwrites it; the server itself is fine.
        """
        if isinstance(exc, BackendError):
            self._backend_failed(operation, exc)
            return
        self.metrics.decode_errors += 1
        if self.raise_errors:
            raise exc
        log.warning(
            "%s on %s found an entry it cannot decode, read as a miss: %s",
            operation,
            self.backend.name,
            exc,
        )

    def _value_refused(self, exc: SerializationError) -> None:
        """The loader's value cannot be cached (the backend freed the lease): it is still served."""
        self.metrics.values_refused += 1
        if self.raise_errors:
            raise exc
        log.warning("a loaded value was served but not cached: %s", exc)

    def _backend_failed(self, operation: str, exc: BackendError, *, swallow: bool = True) -> None:
        self.guard.failed(exc)
        if self.raise_errors or not swallow:
            raise exc
        log.warning(
            "%s failed on %s, serving from the loader: %s", operation, self.backend.name, exc
        )

    # Inspection: why a key would miss, for an operator (read-only, through the guard)

    async def inspect_key(self, key: str) -> KeyState:
        """``key``'s entry against its tags' versions now; BackendError when the backend fails."""
        validate_key(key)
        return await self.guard.call(lambda: self.backend.describe_key(key))

    async def inspect_tag(self, tag: str) -> TagState:
        """``tag``'s current version and pending holders; BackendError when the backend fails."""
        validate_tag(tag)
        return await self.guard.call(lambda: self.backend.describe_tag(tag))


def _check_call(loader: object, cache_none: object) -> None:
    """ConfigurationError for a loader or a cache_none that cannot work."""
    async_check_loader(loader)
    if cache_none is not None and not isinstance(cache_none, bool):
        raise ConfigurationError(f"cache_none must be True, False or None, not {cache_none!r}")
