"""The lease protocol of a miss: one process loads and fills a key, the others wait for its fill.

``begin_fill`` reads the tag versions and takes the key's lease in one script; the holder
loads and fills under those versions, and every way out but a fill that ran gives the
lease back. A caller that finds the lease held polls the entry until it is filled, the
lease comes free (it takes the lease over) or ``lease_wait`` runs out (it loads without
filling).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from freshcache._async.flight import Flight
from freshcache._entries import MISSING, FillStatus, FillTicket, new_token
from freshcache._exceptions import BackendError, SerializationError
from freshcache._synchronization import async_sleep

if TYPE_CHECKING:
    from freshcache._async.cache import AsyncCache

log = logging.getLogger("freshcache")

_FIRST_POLL = 0.002
_MAX_POLL = 0.05

# What the wait returns while the lease is still held and nothing was filled. Not
# MISSING: a loader may return MISSING, and the wait hands over a load's value.
_NOT_YET: Any = object()


class AsyncLeasedLoad:
    """One miss of ``key`` in this process, loaded under the key's lease (or waiting on another's)."""

    __slots__ = (
        "cache",
        "cache_none",
        "deadline",
        "dropped_undecodable",
        "flight",
        "key",
        "loader",
        "poll",
        "tags",
        "token",
        "ttl",
        "waited",
    )

    def __init__(
        self,
        cache: AsyncCache,
        key: str,
        loader: Callable[[], Any],
        tags: Sequence[str],
        ttl: float | None,
        cache_none: bool | None,
        flight: Flight,
    ) -> None:
        self.cache = cache
        self.key = key
        self.loader = loader
        self.tags = tags
        self.ttl = ttl
        self.cache_none = cache_none
        self.flight = flight
        self.token = new_token()
        self.deadline = time.monotonic() + cache.lease_wait
        self.poll = _FIRST_POLL
        self.waited = False
        self.dropped_undecodable = False

    async def run(self) -> Any:
        """The value of the key: loaded and filled here, filled by another process, or loaded without filling."""
        while True:
            ticket = await self._begin_fill()
            if ticket is None:
                return await self.cache._load(self.loader)  # the backend cannot tell: no fill
            if ticket.status is FillStatus.HIT:
                return ticket.value  # filled since our read: no second load
            if ticket.status is FillStatus.PENDING:
                self.cache.metrics.pending_bypasses += 1
                return await self.cache._load(self.loader)
            if ticket.status is FillStatus.ACQUIRED:
                return await self._load_holding_lease(ticket.versions)
            value = await self._wait_for_fill()
            if value is not _NOT_YET:
                return value

    async def _begin_fill(self) -> FillTicket | None:
        """The key's ticket under our token; None when the backend cannot give one."""
        cache = self.cache
        while True:
            self.flight.snapshot_at = time.monotonic()  # what is loaded next is read after this
            if cache._skip_read():
                return None
            try:
                ticket = await cache.backend.begin_fill(
                    self.key, self.tags, token=self.token, lease_ttl=cache.lease_ttl
                )
                cache._backend_ok()
                return ticket
            except (BackendError, SerializationError) as exc:
                if isinstance(exc, BackendError):
                    # It may have failed after the script ran (a timeout): the lease may be ours.
                    self._release_soon()
                cache._read_failed("begin_fill", exc)
                if isinstance(exc, BackendError) or self.dropped_undecodable:
                    return None
                # The entry there cannot be decoded: drop it and fill over it, once.
                self.dropped_undecodable = True
                try:
                    await cache.backend.delete([self.key])
                except BackendError as failure:
                    cache._backend_failed("delete", failure)
                    return None
            except BaseException:
                # Cancelled while the script was in flight: it may run all the same and take
                # the lease for a token nobody else knows.
                self._release_soon()
                raise

    async def _wait_for_fill(self) -> Any:
        """The entry once another process filled it, _NOT_YET, or the loader's value when waiting stops."""
        cache = self.cache
        if not self.waited:
            cache.metrics.lease_waits += 1
            self.waited = True
        if time.monotonic() >= self.deadline:
            cache.metrics.lease_timeouts += 1
            return await cache._load(self.loader)
        await async_sleep(self.poll)
        self.poll = min(self.poll * 1.5, _MAX_POLL)
        self.flight.snapshot_at = time.monotonic()
        if cache._skip_read():
            return await cache._load(self.loader)
        try:
            value = await cache.backend.get(self.key, self.tags)
        except (BackendError, SerializationError) as exc:
            cache._read_failed("get", exc)
            return await cache._load(self.loader)
        return _NOT_YET if value is MISSING else value

    async def _load_holding_lease(self, versions: Sequence[str]) -> Any:
        """Load and fill; every way out of here but a fill that ran leaves the lease free."""
        cache = self.cache
        try:
            value = await cache._load(self.loader)
        except Exception:
            await self._release()
            raise
        except BaseException:
            self._release_soon()  # cancelled: the caller has no time to wait for it
            raise
        cache_none = cache.cache_none if self.cache_none is None else self.cache_none
        if value is None and not cache_none:
            await self._release()
            return value
        ttl = self.ttl
        if value is None and cache.negative_ttl is not None and ttl is None:
            ttl = cache.negative_ttl
        try:
            stored = await cache.backend.fill(
                self.key, value, self.tags, versions, ttl=cache._ttl(ttl), token=self.token
            )
        except BackendError as exc:
            self._release_soon()  # the fill may never have reached the server
            cache._backend_failed("fill", exc)
            return value
        except SerializationError as exc:
            cache._value_refused(exc)  # the backend freed the lease when it refused the value
            return value
        except Exception:
            await self._release()  # refused before any I/O: a value it cannot encode
            raise
        except BaseException:
            self._release_soon()
            raise
        if stored:
            cache.metrics.sets += 1
        else:
            cache.metrics.stale_fills_rejected += 1
        return value

    async def _release(self) -> None:
        try:
            await self.cache.backend.release_lease(self.key, self.token)
        except BackendError as exc:
            self.cache._backend_failed("release_lease", exc)

    def _release_soon(self) -> None:
        """Release our lease (a no-op if not held) without holding up the caller.

        The caller was cancelled, or the backend just failed it: another round trip now
        could cost it a full timeout. Until the release lands, every caller of the key in
        every process would wait for a loader that stopped.
        """
        self.cache._background.start(self._release_quietly)

    async def _release_quietly(self) -> None:
        try:
            await self.cache.backend.release_lease(self.key, self.token)
        except BackendError as exc:
            # Counted already: the failure that led here. The lease lapses after lease_ttl.
            log.info("release_lease of %r failed on %s: %s", self.key, self.cache.backend.name, exc)
