"""Reads that cannot trust the backend: skipped while it is unhealthy or reads are suspended.

A failed call is counted, logged and served from the loader (raised with ``raise_errors``);
an entry that cannot be decoded reads as a miss.
"""

from __future__ import annotations

import logging

from freshcache._async.backends.base import AsyncBackend
from freshcache._async.guard import AsyncBackendGuard
from freshcache._breaker import CircuitBreaker
from freshcache._exceptions import BackendError, SerializationError
from freshcache._metrics import CacheMetrics
from freshcache._synchronization import AsyncCriticalSection

log = logging.getLogger("freshcache")


class AsyncDegradedReads:
    """The degraded half of :class:`AsyncCache`, on the cache's backend, guard and metrics."""

    backend: AsyncBackend
    guard: AsyncBackendGuard
    breaker: CircuitBreaker
    metrics: CacheMetrics
    raise_errors: bool
    reads_suspended: bool
    _read_suspenders: set[object]
    _suspension: AsyncCriticalSection

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

    def _backend_ok(self) -> None:
        if self.breaker.open_until:
            self.guard.succeeded()

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

    def _backend_failed(self, operation: str, exc: BackendError) -> None:
        self.guard.failed(exc)
        if self.raise_errors:
            raise exc
        log.warning(
            "%s failed on %s, serving from the loader: %s", operation, self.backend.name, exc
        )
