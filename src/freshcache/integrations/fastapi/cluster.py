"""Totals across every process of a service: each adds its counter deltas to one Redis hash.

A background thread wakes every ``interval`` seconds, takes this process's counters (plain
attribute reads, nothing on the hit path waits for it) and sends what grew since its last
send as HINCRBYs in one MULTI. A send that fails is retried whole at the next wake, so
nothing is counted twice or lost while Redis is away. A reset of the local counters
first sends what they gathered, so the cluster's totals only ever grow.

The hash lives beside the cache's keys, under its namespace: ``{ns}:m:totals``; a second
hash, ``{ns}:m:processes``, holds each process's last send (Unix time) by process id.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import redis  # imported for real only with a Redis backend: redis is not a fastapi extra

from freshcache._redis.keys import RedisKeys

log = logging.getLogger("freshcache")
T = TypeVar("T")


class ClusterTotals:
    """Adds one process's counter deltas to Redis every ``interval`` seconds; reads the totals."""

    def __init__(
        self,
        client: redis.Redis,
        namespace: str,
        read_counters: Callable[[], dict[str, int]],
        *,
        interval: float = 5.0,
    ) -> None:
        self.client = client
        self.interval = interval
        self.process_id = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        names = RedisKeys(namespace)
        self._totals_key = names.metric_totals
        self._processes_key = names.metric_processes
        self._read = read_counters
        self._sent: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def for_backend(
        cls, backend: Any, read_counters: Callable[[], dict[str, int]], *, interval: float
    ) -> ClusterTotals | None:
        """Totals beside a Redis backend's data (its own connection, sync: it runs in a thread); None for other backends."""
        client = getattr(backend, "client", None)
        pool = getattr(client, "connection_pool", None)
        if pool is None or getattr(backend, "name", None) != "redis":
            return None
        kwargs = {
            key: value
            for key, value in pool.connection_kwargs.items()
            if key in {"host", "port", "db", "username", "password", "socket_timeout", "path"}
        }
        import redis

        if "path" in kwargs:
            sync_client = redis.Redis(unix_socket_path=kwargs.pop("path"), **kwargs)
        else:
            sync_client = redis.Redis(**kwargs)
        return cls(sync_client, backend.namespace, read_counters, interval=interval)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="freshcache-cluster-totals", daemon=True
            )
            self._thread.start()

    def close(self) -> None:
        """Stop the thread and send what is left."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.flush(quiet=True)
        self.client.close()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush(quiet=True)

    def flush(self, *, quiet: bool = False) -> dict[str, int]:
        """Send the deltas since the last send; what was sent (empty if Redis failed and ``quiet``)."""
        with self._lock:
            return self._send(quiet)

    def _send(self, quiet: bool) -> dict[str, int]:
        current = self._read()
        deltas = _deltas(current, self._sent)
        try:
            with self.client.pipeline(transaction=True) as pipe:
                for name, delta in deltas.items():
                    pipe.hincrby(self._totals_key, name, delta)
                pipe.hset(self._processes_key, self.process_id, repr(time.time()))
                pipe.execute()
        except Exception as exc:  # whatever failed, the deltas stay unsent and go with the next
            if not quiet:
                raise
            log.warning("cluster metric totals not sent (retried later): %s", exc)
            return {}
        self._sent = current
        return deltas

    def rebase(self, reset: Callable[[], T]) -> T:
        """Send what the counters gathered, then ``reset()`` them: the totals lose nothing.

        If Redis cannot take them now, the unsent part is carried over to the next send.
        """
        with self._lock:
            self._send(quiet=True)
            unsent = _deltas(self._read(), self._sent)
            result = reset()
            after = self._read()
            self._sent = {
                name: after.get(name, 0) - unsent.get(name, 0) for name in {*after, *unsent}
            }
            return result

    def totals(self) -> tuple[dict[str, int], int]:
        """The summed counters, and how many processes have added to them."""
        with self.client.pipeline(transaction=False) as pipe:
            pipe.hgetall(self._totals_key)
            pipe.hlen(self._processes_key)
            raw_totals, processes = pipe.execute()
        return {name.decode(): int(value) for name, value in raw_totals.items()}, int(processes)


def _deltas(current: dict[str, int], sent: dict[str, int]) -> dict[str, int]:
    names = {*current, *sent}
    return {
        name: current.get(name, 0) - sent.get(name, 0)
        for name in sorted(names)
        if current.get(name, 0) != sent.get(name, 0)
    }
