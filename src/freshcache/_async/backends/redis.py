"""The Redis backend, on redis-py (its asyncio client here, the sync one once generated).

Hit reads that know their tags cost one MGET; everything conditional runs in a Lua script
(:mod:`freshcache._lua`), loaded once and re-sent by redis-py on NOSCRIPT.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis.asyncio
import redis.asyncio.retry
import redis.backoff
import redis.exceptions

from freshcache import _lua, _lua_inspection
from freshcache._async.backends.base import AsyncBackend
from freshcache._async.backends.registry import check_redis_url
from freshcache._entries import (
    MAGIC,
    MISSING,
    PENDING_VERSION,
    FillStatus,
    FillTicket,
    _Missing,
    decode_entry,
    encode_entry,
    new_version,
)
from freshcache._exceptions import (
    BackendError,
    BackendTimeoutError,
    ConfigurationError,
    SerializationError,
    map_exceptions,
)
from freshcache._inspection import KeyState, TagState
from freshcache._keys import validate_key
from freshcache._kinds import require_kind
from freshcache._serializers import Serializer, get_serializer

log = logging.getLogger("freshcache")

_SCAN_BATCH = 1000


def _is_redis_failure(exc: BaseException) -> bool:
    """A RuntimeError is the server's failure only when it is about the event loop.

    A client used from another event loop than the one it connected in (a cache built in
    one ``asyncio.run`` and used in the next) raises "Event loop is closed" or "attached
    to a different loop": the server is unreachable from here, so reads fall back.
    """
    return not isinstance(exc, RuntimeError) or "loop" in str(exc)


# NOSCRIPT never gets here: redis-py loads the script and retries inside the call.
_redis_errors = map_exceptions(
    {
        redis.exceptions.TimeoutError: BackendTimeoutError,
        TimeoutError: BackendTimeoutError,
        redis.exceptions.RedisError: BackendError,
        OSError: BackendError,
        RuntimeError: BackendError,
    },
    source="redis",
    accept=_is_redis_failure,
)


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class AsyncRedisBackend(AsyncBackend):
    """Entries, versions, pending marks and leases in Redis, under one namespace."""

    name = "redis"

    def __init__(
        self,
        client: redis.asyncio.Redis,
        *,
        namespace: str = "fc",
        serializer: Serializer | str = "json",
        pickle_key: bytes | str | None = None,
        tag_ttl: float = 86_400.0,
        owns_client: bool = False,
    ) -> None:
        require_kind(client, (redis.asyncio.Redis, redis.asyncio.RedisCluster), "AsyncRedisBackend")
        try:
            validate_key(namespace)
        except ValueError as exc:
            raise ConfigurationError(f"namespace: {exc}") from None
        if isinstance(serializer, str):
            serializer = get_serializer(serializer, key=pickle_key)
        if not tag_ttl > 0:
            raise ConfigurationError(f"tag_ttl must be a positive number of seconds, not {tag_ttl}")
        self.client = client
        self.namespace = namespace
        self.serializer = serializer
        self.tag_ttl = tag_ttl
        self._owns_client = owns_client
        # The hash tag {namespace} puts all of a namespace's keys in one cluster slot.
        self._entry_prefix = f"{{{namespace}}}:e:"
        self._tag_prefix = f"{{{namespace}}}:t:"
        self._hold_prefix = f"{{{namespace}}}:h:"
        self._lease_prefix = f"{{{namespace}}}:l:"
        self._header_start = b"%s %s " % (MAGIC, serializer.name.encode())
        self._headers: dict[str | tuple[str, ...], list[bytes]] = {}
        self._decode = serializer.loads
        self._get_entries = client.register_script(_lua.GET_ENTRIES)
        self._begin_fill = client.register_script(_lua.BEGIN_FILL)
        self._fill = client.register_script(_lua.FILL)
        self._release = client.register_script(_lua.RELEASE)
        self._invalidate = client.register_script(_lua.INVALIDATE)
        self._mark_pending = client.register_script(_lua.MARK_PENDING)
        self._clear_pending = client.register_script(_lua.CLEAR_PENDING)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        namespace: str | None = None,
        serializer: Serializer | str | None = None,
        pickle_key: bytes | str | None = None,
        tag_ttl: float | None = None,
        socket_timeout: float = 2.0,
        connect_timeout: float = 1.0,
        retries: int = 1,
        max_connections: int = 1024,
    ) -> AsyncRedisBackend:
        """A backend on its own connection pool.

        The URL's query may carry ``namespace``, ``serializer`` and ``tag_ttl`` too;
        the rest of it goes to redis-py. One quick retry by default: a down server must
        cost a failed read in milliseconds, not redis-py's default seconds of backoff.
        """
        check_redis_url(url)
        parts = urlsplit(url)
        ours = {"namespace", "serializer", "tag_ttl"}
        query = parse_qsl(parts.query)
        given = {k: v for k, v in query if k in ours}
        rest = urlunsplit(
            parts._replace(query=urlencode([(k, v) for k, v in query if k not in ours]))
        )
        retry = redis.asyncio.retry.Retry(
            redis.backoff.ExponentialBackoff(cap=0.05, base=0.005), retries
        )
        try:
            # A plain pool with a high bound: redis-py's asyncio default (100) turned a burst
            # of concurrent calls into MaxConnectionsError, and its blocking pool costs about
            # a tenth of a round trip on every call. Idle connections are cheap for Redis.
            pool = redis.asyncio.ConnectionPool.from_url(
                rest,
                max_connections=max_connections,
                socket_timeout=socket_timeout,
                socket_connect_timeout=connect_timeout,
                retry=retry,
            )
            client = redis.asyncio.Redis(connection_pool=pool)
        except ValueError as exc:
            raise ConfigurationError(f"bad Redis URL {url!r}: {exc}") from None
        return cls(
            client,
            namespace=namespace or given.get("namespace", "fc"),
            serializer=serializer or given.get("serializer", "json"),
            pickle_key=pickle_key,
            tag_ttl=tag_ttl if tag_ttl is not None else float(given.get("tag_ttl", 86_400.0)),
            owns_client=True,
        )

    def _tag_keys(self, tags: Sequence[str]) -> list[str]:
        prefix = self._tag_prefix
        return [prefix + tag for tag in tags]

    def _hold_keys(self, tags: Sequence[str]) -> list[str]:
        prefix = self._hold_prefix
        return [prefix + tag for tag in tags]

    def _header_parts(self, tags: Sequence[str]) -> list[bytes]:
        """The fixed bytes of the header of an entry with these tags, around the versions."""
        cache_key: str | tuple[str, ...] = tags[0] if len(tags) == 1 else tuple(tags)
        parts = self._headers.get(cache_key)
        if parts is None:
            key = tuple(tags)
            encoded = [tag.encode() for tag in key]
            parts = (
                [b"%s%d\n%s " % (self._header_start, len(key), encoded[0])]
                if key
                else [b"%s0\n" % self._header_start]
            )
            parts.extend(b"\n%s " % tag for tag in encoded[1:])
            if key:
                parts.append(b"\n")
            if len(self._headers) >= 4096:
                self._headers.clear()  # bounded: tag sets are few, but keys may carry ids
            self._headers[cache_key] = parts
        return parts

    # Reads

    async def get(self, key: str, tags: Sequence[str] | None = None) -> Any | _Missing:
        if tags is None:
            return (await self._get_by_script([key])).get(key, MISSING)
        tag_prefix = self._tag_prefix
        names = [self._entry_prefix + key, *[tag_prefix + tag for tag in tags]]
        try:
            # execute_command, not mget(): the wrapper only re-checks its arguments.
            values = cast("list[bytes | None]", await self.client.execute_command("MGET", *names))  # type: ignore[no-untyped-call]
        except Exception as exc:
            _redis_errors.reraise(exc)
        data = values[0]
        if data is None:
            return MISSING
        # The common case: the entry carries exactly the hinted tags, in order, at the
        # current versions; then its header is the cached parts around those versions.
        parts = self._header_parts(tags)
        if len(parts) == 2:
            version = values[1]
            header = None if version is None else parts[0] + version + parts[1]
        elif None in values:
            header = None
        else:
            pieces = [parts[0]]
            for version, part in zip(values[1:], parts[1:], strict=True):
                pieces.append(version)  # type: ignore[arg-type]
                pieces.append(part)
            header = b"".join(pieces)
        if header is not None and data.startswith(header):
            return self._decode(data[len(header) :], names[0])
        versions = values[1:]
        name, pairs, payload = decode_entry(data)
        current = {tag.encode(): version for tag, version in zip(tags, versions, strict=True)}
        for tag, version in pairs:
            if tag not in current:  # the hint was wrong: let the server check every tag
                return (await self._get_by_script([key])).get(key, MISSING)
            if current[tag] != version:
                return MISSING
        return self._payload(name, payload, names[0])

    def _payload(self, name: str, payload: bytes, stored_at: str) -> Any:
        if name != self.serializer.name:
            raise SerializationError(
                f"entry was written with the {name} serializer; this cache reads {self.serializer.name}"
            )
        return self.serializer.loads(payload, stored_at)

    async def _get_by_script(self, keys: Sequence[str]) -> dict[str, Any]:
        names = [self._entry_prefix + key for key in keys]
        with _redis_errors:
            found = await self._get_entries(keys=names, args=[self._tag_prefix])
        out = {}
        for key, stored_at, data in zip(keys, names, found, strict=True):
            if data:
                name, _, payload = decode_entry(data)
                out[key] = self._payload(name, payload, stored_at)
        return out

    async def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        if not keys:
            return {}
        return await self._get_by_script(list(keys))

    # Fills

    async def begin_fill(
        self, key: str, tags: Sequence[str], *, token: str, lease_ttl: float | None
    ) -> FillTicket:
        keys = [self._lease_prefix + key, *self._tag_keys(tags)]
        stored_at = self._entry_prefix + key
        args: list[Any] = [
            token,
            _ms(lease_ttl) if lease_ttl else 0,
            _ms(self.tag_ttl),
            stored_at,  # read in the script, never written: same slot
            self._tag_prefix,
        ]
        args.extend(new_version() for _ in tags)
        with _redis_errors:
            answer = await self._begin_fill(keys=keys, args=args)
        status = FillStatus(answer[0].decode())
        if status is FillStatus.HIT:
            name, _, payload = decode_entry(answer[1])
            return FillTicket(status, value=self._payload(name, payload, stored_at))
        return FillTicket(status, [version.decode() for version in answer[1:]])

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
        stored_at = self._entry_prefix + key
        try:
            payload = self.serializer.dumps(value, stored_at)
        except SerializationError as exc:
            if token is not None:  # refused before anything is stored: free the key at once
                await self.release_lease(key, token)
            raise SerializationError(f"cannot cache {key!r}: {exc}") from exc
        entry = encode_entry(self.serializer.name, tags, versions, payload)
        keys = [stored_at, self._lease_prefix + key, *self._tag_keys(tags)]
        with _redis_errors:
            stored = await self._fill(keys=keys, args=[token or "", _ms(ttl), entry, *versions])
        return bool(stored)

    async def release_lease(self, key: str, token: str) -> None:
        with _redis_errors:
            await self._release(keys=[self._lease_prefix + key], args=[token])

    async def delete(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        with _redis_errors:
            # Leases first: a load in flight that fills between the two finds its lease
            # gone and stores nothing; the other order would let it store old data.
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.unlink(*[self._lease_prefix + key for key in keys])
                pipe.unlink(*[self._entry_prefix + key for key in keys])
                _, deleted = await pipe.execute()
        return int(deleted)

    async def delete_pattern(self, pattern: str) -> int:
        await self._delete_matching(self._lease_prefix + pattern)  # leases first, as in delete
        return await self._delete_matching(self._entry_prefix + pattern)

    async def _delete_matching(self, match: str) -> int:
        deleted = 0
        batch: list[bytes] = []
        with _redis_errors:
            async for name in self.client.scan_iter(match=match, count=_SCAN_BATCH):
                batch.append(name)
                if len(batch) >= _SCAN_BATCH:
                    deleted += await self.client.unlink(*batch)
                    batch.clear()
            if batch:
                deleted += await self.client.unlink(*batch)
        return deleted

    # Tags

    async def _run_on_tags(self, script: Any, tags: Sequence[str], *args: Any) -> None:
        if not tags:
            return
        keys = self._tag_keys(tags) + self._hold_keys(tags)
        with _redis_errors:
            await script(keys=keys, args=[len(tags), *args])

    async def invalidate_tags(self, tags: Sequence[str]) -> None:
        await self._run_on_tags(self._invalidate, tags)

    async def mark_pending(self, tags: Sequence[str], *, token: str, ttl: float) -> None:
        await self._run_on_tags(self._mark_pending, tags, token, _ms(ttl))

    async def clear_pending(self, tags: Sequence[str], *, token: str, committed: bool) -> None:
        await self._run_on_tags(
            self._clear_pending, tags, token, "1" if committed else "0", _ms(self.tag_ttl)
        )

    async def tag_versions(self, tags: Sequence[str]) -> Mapping[str, str | None]:
        if not tags:
            return {}
        with _redis_errors:
            values = cast("list[bytes | None]", await self.client.mget(self._tag_keys(tags)))
        return {tag: None if v is None else v.decode() for tag, v in zip(tags, values, strict=True)}

    # Housekeeping

    async def clear(self) -> None:
        await self._delete_matching(f"{{{self.namespace}}}:*")

    async def ping(self) -> None:
        with _redis_errors:
            await self.client.ping()

    async def aclose(self) -> None:
        if self._owns_client:
            await self.client.aclose()
            # A pool handed to the client is not the client's to close: it is ours.
            await self.client.connection_pool.disconnect()

    # Inspection (its scripts are registered on first use, in _lua_inspection)

    async def describe_key(self, key: str) -> KeyState:
        script = self.client.register_script(_lua_inspection.DESCRIBE_KEY)
        keys = [self._entry_prefix + key, self._lease_prefix + key]
        with _redis_errors:
            answer = await script(keys=keys, args=[self._tag_prefix, self._hold_prefix])
        now, size, pttl, header, lease, lease_pttl, *per_tag = answer
        holder = None if not lease else lease.decode()
        lease_left = lease_pttl / 1000 if holder is not None and lease_pttl > 0 else None
        if size is False or size is None:
            return KeyState(key, False, lease_holder=holder, lease_ttl_seconds=lease_left)
        stored: dict[str, str] = {}
        if header:
            _, pairs, _ = decode_entry(header)
            stored = {tag.decode(): version.decode() for tag, version in pairs}
        tags = tuple(
            _tag_state(tag, version, holders, now)
            for tag, version, holders in zip(stored, per_tag[::2], per_tag[1::2], strict=True)
        )
        return KeyState(
            key,
            True,
            ttl_seconds=pttl / 1000 if pttl >= 0 else None,
            size_bytes=int(size),
            stored_versions=stored,
            tags=tags,
            lease_holder=holder,
            lease_ttl_seconds=lease_left,
        )

    async def describe_tag(self, tag: str) -> TagState:
        script = self.client.register_script(_lua_inspection.DESCRIBE_TAG)
        keys = [self._tag_prefix + tag, self._hold_prefix + tag]
        with _redis_errors:
            now, version, holders = await script(keys=keys, args=[])
        return _tag_state(tag, version, holders, now)


def _tag_state(tag: str, version: bytes | None, holders: list[bytes], now: int) -> TagState:
    """A TagState from a script's answer: holders are a flat HGETALL, deadlines in server ms."""
    live = {}
    for token, deadline in zip(holders[::2], holders[1::2], strict=True):
        if token != b"prev" and int(deadline) > now:
            live[token.decode()] = (int(deadline) - now) / 1000
    current = version.decode() if version else None
    if current == PENDING_VERSION and not live:
        current = None  # every holder died: the next write or read forgets the version
    return TagState(tag, current, live)
