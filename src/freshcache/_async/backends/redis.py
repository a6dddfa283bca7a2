"""The Redis backend, on redis-py (its asyncio client here, the sync one once generated).

Hit reads that know their tags cost one MGET; everything conditional runs in a Lua script.
The key scheme, the entry format, the scripts and the error map are in
:mod:`freshcache._redis`, shared with the sync backend; this module holds the I/O.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, cast

import redis.asyncio
import redis.asyncio.connection
import redis.asyncio.retry
import redis.backoff
import redis.exceptions

from freshcache._async.backends.base import AsyncBackend
from freshcache._async.backends.redis_pool import AsyncDirectPool, async_direct_pool
from freshcache._durations import Seconds, seconds
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
from freshcache._kinds import require_kind
from freshcache._redis import scripts
from freshcache._redis.connections import pack_text
from freshcache._redis.errors import redis_errors
from freshcache._redis.keys import RedisKeys
from freshcache._redis.urls import check_redis_url, split_redis_url
from freshcache._redis.wire import HeaderParts, decode_entry, encode_entry
from freshcache._serializers import Serializer, get_serializer

log = logging.getLogger("freshcache")

_SCAN_BATCH = 1000


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
        tag_ttl: Seconds = 86_400.0,
        owns_client: bool = False,
        retry_dropped: bool = True,
    ) -> None:
        """``retry_dropped``: a command on the direct path whose connection dropped is sent once more, on a new one."""
        require_kind(client, (redis.asyncio.Redis, redis.asyncio.RedisCluster), "AsyncRedisBackend")
        keys = RedisKeys(namespace)
        if isinstance(serializer, str):
            serializer = get_serializer(serializer, key=pickle_key)
        tag_ttl = seconds("tag_ttl", tag_ttl)
        self.client = client
        self.namespace = namespace
        self.serializer = serializer
        self.tag_ttl = tag_ttl
        self._owns_client = owns_client
        self._keys = keys
        self._scripts = scripts.register(client)
        # Reads and the tag scripts go through connections held and driven here, where
        # the client allows it.
        self._direct: AsyncDirectPool | None = async_direct_pool(client, retry=retry_dropped)
        self._header_parts = HeaderParts(serializer.name).of
        self._decode = serializer.loads

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
        check_redis_url(url, redis.asyncio.connection)
        given, rest = split_redis_url(url)
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
            retry_dropped=retries > 0,
        )

    # Reads

    async def get(self, key: str, tags: Sequence[str] | None = None) -> Any | _Missing:
        if tags is None:
            return (await self._get_by_script([key])).get(key, MISSING)
        keys = self._keys
        tag_prefix = keys.tag
        names = [keys.entry + key, *[tag_prefix + tag for tag in tags]]
        direct = self._direct
        try:
            if direct is not None:
                values: list[bytes | None] = await direct.call(pack_text("MGET", names))
            else:
                # execute_command, not mget(): the wrapper only re-checks its arguments.
                values = await self.client.execute_command("MGET", *names)  # type: ignore[no-untyped-call]
        except Exception as exc:
            redis_errors.reraise(exc)
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
        prefix = self._keys.entry
        names = [prefix + key for key in keys]
        direct = self._direct
        try:
            if direct is not None:
                found = await self._direct_script(
                    direct, self._scripts.get_entries, names, [self._keys.tag]
                )
            else:
                found = await self._scripts.get_entries(keys=names, args=[self._keys.tag])
        except Exception as exc:
            redis_errors.reraise(exc)
        out = {}
        for key, stored_at, data in zip(keys, names, found, strict=True):
            if data:
                name, _, payload = decode_entry(data)
                out[key] = self._payload(name, payload, stored_at)
        return out

    async def _direct_script(
        self, direct: AsyncDirectPool, script: Any, keys: list[str], args: list[str]
    ) -> Any:
        """``script`` on the direct path, by its SHA: only a script that may run twice.

        On NOSCRIPT (a restarted or flushed server) the script's text is sent with EVAL,
        which runs it and loads it again for the next calls.
        """
        arguments = [str(len(keys)), *keys, *args]
        try:
            return await direct.call(pack_text("EVALSHA", [script.sha, *arguments]))
        except redis.exceptions.ResponseError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        return await direct.call(pack_text("EVAL", [script.script, *arguments]))

    async def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        if not keys:
            return {}
        return await self._get_by_script(list(keys))

    # Fills

    async def begin_fill(
        self, key: str, tags: Sequence[str], *, token: str, lease_ttl: float | None
    ) -> FillTicket:
        keys = [self._keys.lease + key, *self._keys.tags(tags)]
        stored_at = self._keys.entry + key
        args: list[Any] = [
            token,
            _ms(lease_ttl) if lease_ttl else 0,
            _ms(self.tag_ttl),
            stored_at,  # read in the script, never written: same slot
            self._keys.tag,
        ]
        args.extend(new_version() for _ in tags)
        with redis_errors:
            answer = await self._scripts.begin_fill(keys=keys, args=args)
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
        stored_at = self._keys.entry + key
        try:
            payload = self.serializer.dumps(value, stored_at)
        except SerializationError as exc:
            if token is not None:  # refused before anything is stored: free the key at once
                await self.release_lease(key, token)
            raise SerializationError(f"cannot cache {key!r}: {exc}") from exc
        entry = encode_entry(self.serializer.name, tags, versions, payload)
        keys = [stored_at, self._keys.lease + key, *self._keys.tags(tags)]
        with redis_errors:
            stored = await self._scripts.fill(
                keys=keys, args=[token or "", _ms(ttl), entry, *versions]
            )
        return bool(stored)

    async def release_lease(self, key: str, token: str) -> None:
        with redis_errors:
            await self._scripts.release(keys=[self._keys.lease + key], args=[token])

    async def delete(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        with redis_errors:
            # Leases first: a load in flight that fills between the two finds its lease
            # gone and stores nothing; the other order would let it store old data.
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.unlink(*[self._keys.lease + key for key in keys])
                pipe.unlink(*[self._keys.entry + key for key in keys])
                _, deleted = await pipe.execute()
        return int(deleted)

    async def delete_pattern(self, pattern: str) -> int:
        await self._delete_matching(self._keys.lease + pattern)  # leases first, as in delete
        return await self._delete_matching(self._keys.entry + pattern)

    async def _delete_matching(self, match: str) -> int:
        deleted = 0
        batch: list[bytes] = []
        with redis_errors:
            async for name in self.client.scan_iter(match=match, count=_SCAN_BATCH):
                batch.append(name)
                if len(batch) >= _SCAN_BATCH:
                    deleted += await self.client.unlink(*batch)
                    batch.clear()
            if batch:
                deleted += await self.client.unlink(*batch)
        return deleted

    # Tags

    async def _run_on_tags(self, script: Any, tags: Sequence[str], *args: str) -> None:
        """One of the tag scripts, each safe to run twice (see ``docs/design.md``)."""
        if not tags:
            return
        keys = self._keys.tags(tags) + self._keys.holds(tags)
        direct = self._direct
        try:
            if direct is not None:
                await self._direct_script(direct, script, keys, [str(len(tags)), *args])
            else:
                await script(keys=keys, args=[len(tags), *args])
        except Exception as exc:
            redis_errors.reraise(exc)

    async def invalidate_tags(self, tags: Sequence[str]) -> None:
        await self._run_on_tags(self._scripts.invalidate, tags)

    async def mark_pending(self, tags: Sequence[str], *, token: str, ttl: float) -> None:
        await self._run_on_tags(self._scripts.mark_pending, tags, token, str(_ms(ttl)))

    async def clear_pending(self, tags: Sequence[str], *, token: str, committed: bool) -> None:
        await self._run_on_tags(
            self._scripts.clear_pending,
            tags,
            token,
            "1" if committed else "0",
            str(_ms(self.tag_ttl)),
        )

    async def tag_versions(self, tags: Sequence[str]) -> Mapping[str, str | None]:
        if not tags:
            return {}
        with redis_errors:
            values = cast("list[bytes | None]", await self.client.mget(self._keys.tags(tags)))
        return {tag: None if v is None else v.decode() for tag, v in zip(tags, values, strict=True)}

    # Housekeeping

    async def clear(self) -> None:
        await self._delete_matching(self._keys.everything)

    async def ping(self) -> None:
        with redis_errors:
            await self.client.ping()

    async def aclose(self) -> None:
        if self._direct is not None:
            await (
                self._direct.aclose()
            )  # its connections are the backend's, whoever owns the client
        if self._owns_client:
            await self.client.aclose()
            # A pool handed to the client is not the client's to close: it is ours.
            await self.client.connection_pool.disconnect()

    # Inspection (read-only scripts: see _redis.scripts)

    async def describe_key(self, key: str) -> KeyState:
        names = self._keys
        with redis_errors:
            answer = await self._scripts.describe_key(
                keys=[names.entry + key, names.lease + key], args=[names.tag, names.hold]
            )
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
        names = self._keys
        with redis_errors:
            now, version, holders = await self._scripts.describe_tag(
                keys=[names.tag + tag, names.hold + tag], args=[]
            )
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
