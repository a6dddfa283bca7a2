"""Events across processes on Redis Streams: one stream, a consumer group per service.

Publishing is ``XADD ... MAXLEN ~ max_len`` (a bounded stream, trimmed in whole nodes so
it costs nothing). Every service reads the stream through its own consumer group, so
each event reaches every service once, and the processes of one service share the
work. A consumer reads with ``XREADGROUP`` and acknowledges with ``XACK`` only after the
handlers succeeded. What stays pending longer than ``redeliver_after`` (a handler failed,
or its consumer died) is taken over with ``XAUTOCLAIM`` by a live consumer of the
service, itself included; after ``max_deliveries`` the message goes to the service's
dead-letter stream with the reason, and is acknowledged. A message that is not a valid
event is dead-lettered at once.

The group's position and its pending list live in Redis: a consumer that loses its
connection (Redis restarted, a partition) retries with backoff and carries on from the
group's position, so nothing acknowledged comes back and nothing pending is lost, as far
as the server's persistence keeps them. A group lost with the server's data is created
again from the start of whatever stream there is.

The async transport consumes in a task on the running loop; the generated sync one in a
daemon thread, which also runs the handlers.

Keys (:mod:`freshcache._redis.keys`): ``{namespace}:events`` (the stream) and
``{namespace}:events:dead:<service>``.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Sequence
from typing import Any

import redis.asyncio
import redis.asyncio.retry
import redis.backoff

from freshcache import _synchronization
from freshcache._async.events.transports.base import AsyncEventTransport, check_max_deliveries
from freshcache._durations import Seconds, seconds
from freshcache._events import DeadLetter, Event, InvalidEventError
from freshcache._exceptions import BackendError, ConfigurationError
from freshcache._keys import validate_key
from freshcache._redis.errors import redis_errors
from freshcache._redis.keys import RedisKeys

log = logging.getLogger("freshcache.events")

_MAX_REMEMBERED_REASONS = 10_000


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _default_consumer() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class AsyncRedisStreamsTransport(AsyncEventTransport):
    """Publish to a Redis stream; consume it in this service's consumer group, at least once.

    ``service`` names the consumer group (every process of a service passes the same);
    ``consumer`` this process within it (by default host, pid and a random suffix).
    ``redeliver_after`` must be longer than the slowest handling of a batch (the async
    bus cuts a handler off at its ``handler_timeout``), or a live consumer's messages are
    taken over as if it were dead and handled twice. ``start_at`` is where a new group
    begins: ``"$"`` (events published from now on) or ``"0"`` (the whole stream).
    """

    name = "redis-streams"

    def __init__(
        self,
        client: redis.asyncio.Redis,
        *,
        service: str,
        namespace: str = "fc",
        consumer: str | None = None,
        max_len: int = 100_000,
        max_deliveries: int = 5,
        redeliver_after: Seconds = 30.0,
        batch: int = 100,
        block: Seconds = 0.1,
        start_at: str = "$",
        owns_client: bool = False,
    ) -> None:
        for what, value in (("namespace", namespace), ("service", service)):
            try:
                validate_key(value)
            except ValueError as exc:
                raise ConfigurationError(f"{what}: {exc}") from None
        consumer = consumer if consumer is not None else _default_consumer()
        if not consumer or not consumer.isprintable() or " " in consumer:
            raise ConfigurationError(
                f"consumer must be a printable name without spaces, not {consumer!r}"
            )
        if max_len < 1:
            raise ConfigurationError(f"max_len must be at least 1, not {max_len}")
        redeliver_after = seconds("redeliver_after", redeliver_after)
        block = seconds("block", block)
        if batch < 1:
            raise ConfigurationError(f"batch must be at least 1, not {batch}")
        self.client = client
        self.service = service
        self.namespace = namespace
        self.consumer = consumer
        self.max_len = max_len
        self.max_deliveries = check_max_deliveries(max_deliveries)
        self.redeliver_after = redeliver_after
        self.batch = batch
        self.block = block
        self.start_at = start_at
        keys = RedisKeys(namespace)
        self.stream = keys.events
        self.dead_stream = keys.dead_letters(service)
        self._owns_client = owns_client
        self._stopping = _synchronization.AsyncEvent()
        self._consumer_task: _synchronization.AsyncBackgroundTask | None = None
        self._next_claim = 0.0
        self._to_acknowledge: list[bytes] = []  # handled, acknowledged with the next read
        self._reasons: dict[bytes, str] = {}  # why a message of ours was not acknowledged

    @classmethod
    def from_url(cls, url: str, *, service: str, **options: Any) -> AsyncRedisStreamsTransport:
        """A transport on its own connection pool to ``url``.

        One quick retry, as the cache's backend: a connection the server closed (it
        restarted) is replaced at once. A retried XADD that had reached the server is a
        duplicate, which at-least-once delivery allows.
        """
        block = options.get("block", 0.1)
        retry = redis.asyncio.retry.Retry(redis.backoff.ExponentialBackoff(cap=0.05, base=0.005), 1)
        client = redis.asyncio.Redis.from_url(
            url, socket_timeout=block + 2.0, socket_connect_timeout=1.0, retry=retry
        )
        return cls(client, service=service, owns_client=True, **options)

    # Publishing

    async def publish(self, events: Sequence[Event]) -> None:
        payloads = [event.to_json() for event in events]
        with redis_errors:
            if len(payloads) == 1:
                await self.client.xadd(
                    self.stream, {"event": payloads[0]}, maxlen=self.max_len, approximate=True
                )
                return
            async with self.client.pipeline(transaction=False) as pipe:
                for payload in payloads:
                    pipe.xadd(
                        self.stream, {"event": payload}, maxlen=self.max_len, approximate=True
                    )
                await pipe.execute()

    # Consuming

    async def start(self) -> None:
        """Join the service's consumer group (creating it at ``start_at``) and consume in the background."""
        self._attached()
        if self._consumer_task is not None:
            return
        try:
            await self._create_group(self.start_at)
        except BackendError as exc:
            log.warning(
                "event consumer %s: Redis is not reachable yet (%s); retrying", self.consumer, exc
            )
        self._consumer_task = _synchronization.AsyncBackgroundTask(
            self._consume, f"freshcache-events-{self.consumer}"
        )
        self._consumer_task.start()

    async def aclose(self) -> None:
        self._stopping.set()
        if self._consumer_task is not None:
            await self._consumer_task.join(self.block + 5.0)
            self._consumer_task = None
        if self._owns_client:
            await self.client.aclose()

    async def _create_group(self, start_at: str) -> None:
        try:
            with redis_errors:
                await self.client.xgroup_create(
                    self.stream, self.service, id=start_at, mkstream=True
                )
        except BackendError as exc:
            if "BUSYGROUP" not in str(exc):  # the group exists: keep its position
                raise

    async def _consume(self) -> None:
        backoff = 0.05
        while not self._stopping.is_set():
            try:
                await self._step()
                backoff = 0.05
            except Exception as exc:  # the consumer must outlive any one failure
                if "NOGROUP" in str(exc):
                    log.warning(
                        "event consumer %s: the group %s is gone; creating it again",
                        self.consumer,
                        self.service,
                    )
                    try:
                        await self._create_group("0")
                        continue
                    except Exception as again:
                        exc = again
                log.warning(
                    "event consumer %s: %s; retrying in %.2f s", self.consumer, exc, backoff
                )
                await self._stopping.wait(backoff)
                backoff = min(backoff * 2, 2.0)
        await self._flush_acknowledgements()

    async def _flush_acknowledgements(self) -> None:
        acknowledged, self._to_acknowledge = self._to_acknowledge, []
        try:
            await self._acknowledge(acknowledged)
        except Exception as exc:
            # They stay pending and come back after redeliver_after: at least once.
            log.warning("event consumer %s: could not acknowledge on close: %s", self.consumer, exc)

    async def _step(self) -> None:
        now = time.monotonic()
        if now >= self._next_claim:
            self._next_claim = now + self.redeliver_after / 2
            # Our own handled messages first, or a long batch could reclaim them as idle.
            acknowledged, self._to_acknowledge = self._to_acknowledge, []
            await self._acknowledge(acknowledged)
            await self._reclaim()
        reply = await self._acknowledge_and_read()
        for _stream, messages in reply or ():
            handled = [await self._handle(message_id, fields, 1) for message_id, fields in messages]
            self._to_acknowledge.extend(
                message_id for message_id in handled if message_id is not None
            )

    async def _acknowledge_and_read(self) -> Any:
        """XACK what the last batch's handlers finished and XREADGROUP the next, in one round trip.

        The acknowledgement still follows the handlers; pipelining it with the next read
        halves the round trips per batch, which is most of the delivery latency.
        """
        streams: Any = {self.stream: ">"}
        block = _ms(self.block)
        acknowledged, self._to_acknowledge = self._to_acknowledge, []
        if not acknowledged:
            return await self.client.xreadgroup(
                self.service, self.consumer, streams, count=self.batch, block=block
            )
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.xack(self.stream, self.service, *acknowledged)
                pipe.xreadgroup(self.service, self.consumer, streams, count=self.batch, block=block)
                _, reply = await pipe.execute()
        except BaseException:
            self._to_acknowledge[:0] = acknowledged  # not sent, or not known to be: again
            raise
        return reply

    async def _reclaim(self) -> None:
        """Take over messages pending longer than ``redeliver_after`` (of dead consumers, or ours that failed)."""
        start: Any = "0-0"
        while not self._stopping.is_set():
            reply: Any = await self.client.xautoclaim(
                self.stream,
                self.service,
                self.consumer,
                min_idle_time=_ms(self.redeliver_after),
                start_id=start,
                count=self.batch,
            )
            start, messages = reply[0], reply[1]
            trimmed = reply[2] if len(reply) > 2 else []
            if trimmed:  # trimmed by MAXLEN while pending: nothing is left to deliver
                await self.client.xack(self.stream, self.service, *trimmed)
            if messages:
                counts = await self._delivery_counts([message_id for message_id, _ in messages])
                handled = [
                    await self._handle(
                        message_id, fields, counts.get(message_id, self.max_deliveries + 1)
                    )
                    for message_id, fields in messages
                ]
                await self._acknowledge(handled)
            if _text(start) == "0-0":
                return

    async def _delivery_counts(self, message_ids: list[bytes]) -> dict[bytes, int]:
        pending: Any = await self.client.xpending_range(
            self.stream,
            self.service,
            min=message_ids[0],
            max=message_ids[-1],
            count=len(message_ids) + 16,
            consumername=self.consumer,
        )
        return {entry["message_id"]: int(entry["times_delivered"]) for entry in pending}

    async def _acknowledge(self, handled: Sequence[bytes | None]) -> None:
        """One XACK for the messages of a batch whose handlers succeeded.

        After the whole batch rather than after each message: one round trip instead of
        one per event. A consumer that dies within a batch has some of it delivered again,
        which at-least-once delivery allows.
        """
        message_ids = [message_id for message_id in handled if message_id is not None]
        if not message_ids:
            return
        try:
            await self.client.xack(self.stream, self.service, *message_ids)
        except BaseException:
            self._to_acknowledge[:0] = message_ids  # try again with the next read
            raise

    async def _handle(
        self, message_id: bytes, fields: dict[bytes, bytes] | None, deliveries: int
    ) -> bytes | None:
        """Deliver one message; its id if it is to be acknowledged now (its handlers succeeded)."""
        if deliveries > 1:
            self.metrics.redeliveries += 1
        payload: bytes | None = (fields or {}).get(b"event")
        try:
            if payload is None:
                raise InvalidEventError("no 'event' field in the message")
            event = Event.from_json(payload)
        except InvalidEventError as exc:
            await self._dead_letter(message_id, payload, f"malformed event: {exc}", deliveries)
            return None
        if deliveries > self.max_deliveries:
            given_up = self._reasons.pop(message_id, None) or (
                f"not acknowledged after {deliveries - 1} deliveries (its consumers died or stalled)"
            )
            await self._dead_letter(message_id, payload, given_up, deliveries - 1)
            return None
        reason = await self._attached()(event, deliveries)
        if reason is None:
            self._reasons.pop(message_id, None)
            return message_id
        if deliveries >= self.max_deliveries:
            self._reasons.pop(message_id, None)
            await self._dead_letter(message_id, payload, reason, deliveries)
            return None
        if len(self._reasons) >= _MAX_REMEMBERED_REASONS:
            self._reasons.clear()  # only the wording of a later dead letter is lost
        self._reasons[message_id] = reason  # left pending: reclaimed after redeliver_after
        return None

    async def _dead_letter(
        self, message_id: bytes, payload: bytes | None, reason: str, deliveries: int
    ) -> None:
        log.error(
            "event consumer %s: dead-lettering message %s after %d deliveries: %s",
            self.consumer,
            _text(message_id),
            deliveries,
            reason,
        )
        self.metrics.dead_lettered += 1
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.xadd(
                self.dead_stream,
                {
                    "id": message_id,
                    "reason": reason,
                    "deliveries": deliveries,
                    "event": payload or b"",
                },
                maxlen=self.max_len,
                approximate=True,
            )
            pipe.xack(self.stream, self.service, message_id)
            await pipe.execute()

    async def backlog(self) -> dict[str, int]:
        """This service's ``lag`` (entries in the stream not yet read by the group) and ``pending`` (read, not acknowledged)."""
        with redis_errors:
            groups: Any = await self.client.xinfo_groups(self.stream)
        for group in groups:
            if _text(group["name"]) == self.service:
                return {"lag": int(group.get("lag") or 0), "pending": int(group["pending"])}
        return {"lag": 0, "pending": 0}

    async def dead_letters(self, count: int = 100) -> list[DeadLetter]:
        with redis_errors:
            entries: Any = await self.client.xrange(self.dead_stream, count=count)
        out = []
        for _, fields in entries:
            payload = _text(fields.get(b"event", b""))
            try:
                event: Event | None = Event.from_json(payload)
            except InvalidEventError:
                event = None
            out.append(
                DeadLetter(
                    _text(fields[b"id"]),
                    _text(fields[b"reason"]),
                    int(fields[b"deliveries"]),
                    payload,
                    event,
                )
            )
        return out
