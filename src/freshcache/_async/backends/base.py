"""The contract every backend fulfils. The policy (when to call what) lives in ``cache.py``.

A backend stores entries with the versions of their tags, keeps those versions, the
pending marks of open write transactions and the leases of loaders, and answers every
operation below atomically with respect to the others, across every process that shares
it. ``freshcache.testing`` checks a backend against this contract.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from freshcache._entries import FillTicket, _Missing
from freshcache._inspection import KeyState, TagState


class AsyncBackend(abc.ABC):
    """Storage for entries, tag versions, pending marks and leases."""

    name: str = "backend"

    # A backend that answers reads from this process's memory may offer get_now(key, tags):
    # get's answer, at once, as a plain call (no coroutine to await), safe wherever get is.
    # The cache looks it up once and serves its hits through it; None: it awaits get.
    get_now: Callable[[str, Sequence[str] | None], Any] | None = None

    # Reads

    @abc.abstractmethod
    async def get(self, key: str, tags: Sequence[str] | None = None) -> Any | _Missing:
        """The value under ``key``, or MISSING when absent, expired, or any tag moved.

        ``tags`` is a hint: the tags the caller expects the entry to carry, so a byte
        store can read entry and versions in one round trip. A backend must stay correct
        when the hint is wrong or absent.
        """

    @abc.abstractmethod
    async def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        """The valid entries among ``keys``; misses are left out."""

    # Writes: fills are conditional on the versions read before the load

    @abc.abstractmethod
    async def begin_fill(
        self, key: str, tags: Sequence[str], *, token: str, lease_ttl: float | None
    ) -> FillTicket:
        """Prepare a fill of ``key``: read (creating when absent) the versions of ``tags``.

        With ``lease_ttl`` the caller also asks for the load lease on ``key`` for that
        many seconds: BUSY if another token holds it; HIT, with the value, if a valid
        entry is there already (filled since the caller's read: no second load). PENDING
        if a write transaction holds any of the tags (then nothing is taken and nothing
        may be filled).
        """

    @abc.abstractmethod
    async def fill(
        self,
        key: str,
        value: Any,
        tags: Sequence[str],
        versions: Sequence[str],
        *,
        ttl: float,
        token: str | None,
    ) -> bool:
        """Store ``value`` if every tag still has the version given; release ``token``'s lease.

        False, and nothing stored, when a version moved: the value may be stale.
        """

    @abc.abstractmethod
    async def release_lease(self, key: str, token: str) -> None:
        """Give up ``token``'s lease on ``key`` without filling (a no-op if not held)."""

    @abc.abstractmethod
    async def delete(self, keys: Sequence[str]) -> int:
        """Delete entries; the number that existed."""

    @abc.abstractmethod
    async def delete_pattern(self, pattern: str) -> int:
        """Delete every entry whose key matches the glob ``pattern``; how many."""

    # Tags

    @abc.abstractmethod
    async def invalidate_tags(self, tags: Sequence[str]) -> None:
        """Give every tag a new version, in one operation, whatever the number of entries.

        A tag still held pending by a writer stays pending (and so cannot be filled).
        """

    @abc.abstractmethod
    async def mark_pending(self, tags: Sequence[str], *, token: str, ttl: float) -> None:
        """Phase one of a strict write: ``token`` holds ``tags`` pending for at most ``ttl`` s."""

    @abc.abstractmethod
    async def clear_pending(self, tags: Sequence[str], *, token: str, committed: bool) -> None:
        """Phase two: ``token`` lets go of ``tags``.

        ``committed``: the tags get new versions once no writer holds them. Otherwise
        (rolled back) a tag nobody else changed meanwhile gets its old version back.
        """

    @abc.abstractmethod
    async def tag_versions(self, tags: Sequence[str]) -> Mapping[str, str | None]:
        """The current version of each tag: None when absent, PENDING_VERSION when held."""

    # Housekeeping

    @abc.abstractmethod
    async def clear(self) -> None:
        """Remove everything this backend stored (its namespace only)."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise BackendError if the backend cannot be reached."""

    async def aclose(self) -> None:
        """Release connections. The default has nothing to release."""
        return

    # Inspection: read-only, for operators asking why a key misses

    @abc.abstractmethod
    async def describe_key(self, key: str) -> KeyState:
        """``key``'s entry (its tags with the versions stored, TTL left, size) and its tags now.

        Changes nothing: no LRU order, no pruning of expired holders, no lease.
        """

    @abc.abstractmethod
    async def describe_tag(self, tag: str) -> TagState:
        """``tag``'s current version and the writers holding it pending, with their time left."""
