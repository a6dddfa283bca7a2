"""The key scheme: every name freshcache gives a Redis key, under one namespace ``ns``.

::

    {ns}:e:<key>            an entry: header with tag versions, then the payload (see .wire)
    {ns}:t:<tag>            a tag's version: 16 hex digits, or "!pending" while a writer holds it
    {ns}:h:<tag>            a hash of the writers holding the tag: token -> deadline (ms);
                            field "prev" keeps the version to restore if they all roll back
    {ns}:l:<key>            the lease of the loader filling <key>: its token, with a TTL
    {ns}:events             the stream of domain events
    {ns}:events:dead:<svc>  the events a service gave up on, with the reason

The braces make the namespace a Redis Cluster hash tag: all of its keys share one slot,
so MGET and the scripts work on a cluster too. Keys, tags and namespaces cannot contain
braces, globs or white space, so nothing put after a prefix can break the scheme.
"""

from __future__ import annotations

from collections.abc import Sequence

from freshcache._exceptions import ConfigurationError
from freshcache._keys import validate_key


class RedisKeys:
    """The names of one namespace's keys; the prefixes are plain strings for the hit path."""

    __slots__ = (
        "entry",
        "events",
        "everything",
        "hold",
        "lease",
        "metric_processes",
        "metric_totals",
        "namespace",
        "tag",
    )

    def __init__(self, namespace: str) -> None:
        try:
            validate_key(namespace)
        except ValueError as exc:
            raise ConfigurationError(f"namespace: {exc}") from None
        slot = f"{{{namespace}}}"
        self.namespace = namespace
        self.entry = f"{slot}:e:"
        self.tag = f"{slot}:t:"
        self.hold = f"{slot}:h:"
        self.lease = f"{slot}:l:"
        self.everything = f"{slot}:*"  # a SCAN pattern: every key of the namespace
        self.events = f"{slot}:events"
        # Counters summed over every process of a service (the monitoring API's cluster scope).
        self.metric_totals = f"{slot}:m:totals"
        self.metric_processes = f"{slot}:m:processes"

    def tags(self, tags: Sequence[str]) -> list[str]:
        prefix = self.tag
        return [prefix + tag for tag in tags]

    def holds(self, tags: Sequence[str]) -> list[str]:
        prefix = self.hold
        return [prefix + tag for tag in tags]

    def dead_letters(self, service: str) -> str:
        return f"{self.events}:dead:{service}"
