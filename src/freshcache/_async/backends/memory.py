"""The in-process backend: an LRU of entries, with tag versions, pending marks and leases.

A fill keeps what the serializer gives back after one round trip (JSON by default): the
value a Redis hit would return, refused with the same error a Redis fill would raise, and
a copy, so the loader's caller can change its own object without changing the cache.
Hits then hand out that stored object itself, as cachetools does (a copy per hit would
cost more than the hit): treat cached values as read-only. Everything per key or per tag
is bounded: entries by count (and optionally bytes), tag versions by count, leases and
pending marks by their TTL.
"""

from __future__ import annotations

import secrets
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from freshcache._async.backends.base import AsyncBackend
from freshcache._entries import (
    MISSING,
    PENDING_VERSION,
    FillStatus,
    FillTicket,
    _Missing,
    new_version,
)
from freshcache._exceptions import ConfigurationError, SerializationError
from freshcache._inspection import KeyState, TagState
from freshcache._keys import pattern_regex
from freshcache._serializers import Serializer, get_serializer
from freshcache._synchronization import AsyncCriticalSection


class _Entry:
    __slots__ = ("expires_at", "size", "value", "versions")

    def __init__(
        self, value: Any, versions: tuple[tuple[str, str], ...], expires_at: float, size: int
    ) -> None:
        self.value = value
        self.versions = versions
        self.expires_at = expires_at
        self.size = size


class _Hold:
    """The writers holding a tag pending, and the version it had before the first one."""

    __slots__ = ("holders", "previous")

    def __init__(self, previous: str | None) -> None:
        self.holders: dict[str, float] = {}
        self.previous = previous


def approximate_size(value: Any) -> int:
    """A rough, recursive byte size of common value shapes, for the ``max_bytes`` bound."""
    size = sys.getsizeof(value)
    if isinstance(value, dict):
        size += sum(approximate_size(k) + approximate_size(v) for k, v in value.items())
    elif isinstance(value, (list, tuple, set, frozenset)):
        size += sum(approximate_size(item) for item in value)
    return size


class AsyncMemoryBackend(AsyncBackend):
    """An in-process backend. Safe under threads in its sync form."""

    name = "memory"

    def __init__(
        self,
        *,
        max_entries: int = 10_000,
        max_bytes: int | None = None,
        max_tags: int | None = None,
        sizeof: Callable[[Any], int] = approximate_size,
        clock: Callable[[], float] = time.monotonic,
        serializer: Serializer | str = "json",
    ) -> None:
        """``serializer``: the one production uses, so a value that works here works there."""
        if max_entries < 1:
            raise ConfigurationError(f"max_entries must be at least 1, not {max_entries}")
        if max_bytes is not None and max_bytes < 1:
            raise ConfigurationError(f"max_bytes must be at least 1, not {max_bytes}")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        # Evicting a tag version only turns its entries into misses, so a bound is safe.
        self.max_tags = max_tags if max_tags is not None else 4 * max_entries
        if self.max_tags < 1:
            raise ConfigurationError(f"max_tags must be at least 1, not {self.max_tags}")
        if isinstance(serializer, str):
            # Nothing leaves the process, so a pickle key of its own is as good as any.
            serializer = get_serializer(serializer, key=secrets.token_bytes(32))
        self.serializer = serializer
        self._sizeof = sizeof
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._bytes = 0
        self._versions: OrderedDict[str, str] = OrderedDict()
        # The read's calls, bound once: CPython leaves a method looked up on an OrderedDict
        # (an object with an instance dict) or an attribute holding a function unspecialized,
        # a generic lookup per call on every hit.
        self._entry_of = self._entries.get
        self._touch = self._entries.move_to_end
        self._version_now = self._versions.get
        self._holds: dict[str, _Hold] = {}
        self._leases: dict[str, tuple[str, float]] = {}
        self._operations = 0
        self._guard = AsyncCriticalSection()
        if type(self).get is AsyncMemoryBackend.get:  # a subclass's own get stays the read
            self.get_now = self._guard.around(self._get)

    def __len__(self) -> int:
        return len(self._entries)

    # Reads

    async def get(self, key: str, tags: Sequence[str] | None = None) -> Any | _Missing:
        with self._guard:
            return self._get(key)

    def _get(self, key: str, tags: Sequence[str] | None = None) -> Any:
        """get's answer, inside the critical section (``tags``, a hint, is not needed here)."""
        # Each call through a local: called as self.name(...), an attribute that holds a
        # function takes the generic method lookup on every call.
        entry_of = self._entry_of
        entry = entry_of(key)
        if entry is None:
            return MISSING
        clock = self._clock
        if entry.expires_at <= clock():
            self._remove(key)
            return MISSING
        version_now = self._version_now
        for tag, version in entry.versions:
            if version_now(tag) != version:
                return MISSING
        touch = self._touch
        touch(key)
        return entry.value

    async def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        with self._guard:
            found = {key: self._get(key) for key in keys}
        return {key: value for key, value in found.items() if value is not MISSING}

    # Fills

    async def begin_fill(
        self, key: str, tags: Sequence[str], *, token: str, lease_ttl: float | None
    ) -> FillTicket:
        with self._guard:
            now = self._clock()
            self._sweep(now)
            if any(self._is_held(tag, now) for tag in tags):
                return FillTicket(FillStatus.PENDING)
            if lease_ttl is not None:
                value = self._get(key)
                if value is not MISSING:
                    return FillTicket(FillStatus.HIT, value=value)
                lease = self._leases.get(key)
                if lease is not None and lease[0] != token and lease[1] > now:
                    return FillTicket(FillStatus.BUSY)
                self._leases[key] = (token, now + lease_ttl)
            return FillTicket(FillStatus.ACQUIRED, [self._version_of(tag) for tag in tags])

    def _sweep(self, now: float, every: int = 1024) -> None:
        """Every so many operations, drop the leases and pending marks whose holders died.

        Otherwise a lease or a mark would linger until its key or tag is touched again;
        this keeps both bounded by their TTL without a timer thread.
        """
        self._operations += 1
        if self._operations % every:
            return
        for key in [key for key, (_, deadline) in self._leases.items() if deadline <= now]:
            del self._leases[key]
        for tag in list(self._holds):
            self._is_held(tag, now)

    def _version_of(self, tag: str) -> str:
        version = self._versions.get(tag)
        if version is None:
            version = self._versions[tag] = new_version()
            while len(self._versions) > self.max_tags:
                oldest = next(iter(self._versions))
                if oldest in self._holds:  # never forget a pending mark early
                    self._versions.move_to_end(oldest)
                    break
                del self._versions[oldest]
        return version

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
        try:
            value = self.serializer.loads(self.serializer.dumps(value, key), key)
        except SerializationError as exc:
            if token is not None:  # refused before anything is stored: free the key at once
                await self.release_lease(key, token)
            raise SerializationError(f"cannot cache {key!r}: {exc}") from exc
        size = self._sizeof(value) if self.max_bytes is not None else 0
        with self._guard:
            if token is not None:
                lease = self._leases.get(key)
                if lease is None or lease[0] != token or lease[1] <= self._clock():
                    return False  # the lease was taken (a delete of the key) or expired
                del self._leases[key]
            current = self._versions
            if any(
                current.get(tag) != version for tag, version in zip(tags, versions, strict=True)
            ):
                return False
            if self.max_bytes is not None and size > self.max_bytes:
                return False  # larger than the whole cache: serve it, never store it
            self._remove(key)
            self._entries[key] = _Entry(
                value, tuple(zip(tags, versions, strict=True)), self._clock() + ttl, size
            )
            self._bytes += size
            self._evict()
            return True

    def _evict(self) -> None:
        while len(self._entries) > self.max_entries or (
            self.max_bytes is not None and self._bytes > self.max_bytes
        ):
            _, entry = self._entries.popitem(last=False)
            self._bytes -= entry.size

    def _remove(self, key: str) -> bool:
        """Drop ``key``; whether it held an entry that had not expired yet."""
        entry = self._entries.pop(key, None)
        if entry is None:
            return False
        self._bytes -= entry.size
        return entry.expires_at > self._clock()

    async def release_lease(self, key: str, token: str) -> None:
        with self._guard:
            self._release(key, token)

    def _release(self, key: str, token: str) -> None:
        lease = self._leases.get(key)
        if lease is not None and lease[0] == token:
            del self._leases[key]

    async def delete(self, keys: Sequence[str]) -> int:
        with self._guard:
            for key in keys:
                self._leases.pop(key, None)  # a load in flight for the key must not store
            return sum(self._remove(key) for key in keys)

    async def delete_pattern(self, pattern: str) -> int:
        with self._guard:
            match = pattern_regex(pattern).fullmatch
            for key in [key for key in self._leases if match(key)]:
                del self._leases[key]  # loads in flight for these keys must not store
            matched = [key for key in self._entries if match(key)]
            return sum(self._remove(key) for key in matched)

    # Tags

    def _is_held(self, tag: str, now: float) -> bool:
        hold = self._holds.get(tag)
        if hold is None:
            return False
        for token, deadline in list(hold.holders.items()):
            if deadline <= now:
                # It died with its outcome unknown (it may have committed): never restore.
                del hold.holders[token]
                hold.previous = None
        if hold.holders:
            return True
        # Every holder died: what they did may have committed, so the old version goes.
        del self._holds[tag]
        self._versions.pop(tag, None)
        return False

    async def invalidate_tags(self, tags: Sequence[str]) -> None:
        with self._guard:
            now = self._clock()
            for tag in tags:
                if self._is_held(tag, now):
                    self._holds[tag].previous = None
                else:
                    self._versions.pop(tag, None)

    async def mark_pending(self, tags: Sequence[str], *, token: str, ttl: float) -> None:
        with self._guard:
            now = self._clock()
            self._sweep(now)
            for tag in tags:
                if not self._is_held(tag, now):
                    self._holds[tag] = _Hold(self._versions.get(tag))
                self._holds[tag].holders[token] = now + ttl
                self._versions[tag] = PENDING_VERSION

    async def clear_pending(self, tags: Sequence[str], *, token: str, committed: bool) -> None:
        with self._guard:
            now = self._clock()
            for tag in tags:
                hold = self._holds.get(tag)
                if hold is None:
                    if committed:
                        self._versions.pop(tag, None)
                    continue
                hold.holders.pop(token, None)
                if committed:
                    hold.previous = None
                if self._is_held(tag, now):
                    continue
                self._holds.pop(tag, None)
                if hold.previous is None:
                    self._versions.pop(tag, None)
                else:
                    self._versions[tag] = hold.previous

    async def tag_versions(self, tags: Sequence[str]) -> Mapping[str, str | None]:
        with self._guard:
            now = self._clock()
            for tag in tags:
                self._is_held(tag, now)
            return {tag: self._versions.get(tag) for tag in tags}

    # Housekeeping

    async def clear(self) -> None:
        with self._guard:
            self._entries.clear()
            self._bytes = 0
            self._versions.clear()
            self._holds.clear()
            self._leases.clear()

    async def ping(self) -> None:
        return None

    # Inspection

    async def describe_key(self, key: str) -> KeyState:
        with self._guard:
            now = self._clock()
            lease = self._leases.get(key)
            holder, lease_left = (None, None) if lease is None else (lease[0], lease[1] - now)
            if lease_left is not None and lease_left <= 0:
                holder, lease_left = None, None
            entry = self._entries.get(key)
            if entry is None or entry.expires_at <= now:
                return KeyState(key, False, lease_holder=holder, lease_ttl_seconds=lease_left)
            return KeyState(
                key,
                True,
                ttl_seconds=entry.expires_at - now,
                size_bytes=entry.size or self._sizeof(entry.value),
                stored_versions=dict(entry.versions),
                tags=tuple(self._tag_state(tag, now) for tag, _ in entry.versions),
                lease_holder=holder,
                lease_ttl_seconds=lease_left,
            )

    async def describe_tag(self, tag: str) -> TagState:
        with self._guard:
            return self._tag_state(tag, self._clock())

    def _tag_state(self, tag: str, now: float) -> TagState:
        hold = self._holds.get(tag)
        holders = {} if hold is None else {t: d - now for t, d in hold.holders.items() if d > now}
        version = self._versions.get(tag)
        if version == PENDING_VERSION and not holders:
            version = None  # every holder died: the next read forgets the version
        return TagState(tag, version, holders)
