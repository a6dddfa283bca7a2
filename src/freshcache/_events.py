"""Domain events: what an event is, which types exist, and what the bus counts. Pure, no I/O.

An :class:`Event` is a typed fact about the domain (``user.updated`` with the user's new
and old values) that crosses process boundaries as JSON, so everything in it must survive
a JSON round trip: the constructor refuses what would not, before anything is sent.
"""

from __future__ import annotations

import json
import math
import random
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ._exceptions import ConfigurationError
from ._exceptions import InvalidEventError as InvalidEventError  # its old home, still importable
from ._metrics import EVENT_METRICS, Histogram

_TYPE_NAME = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")
_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_FIELDS = ("type", "data", "id", "occurred_at", "source")


class EventTypes:
    """The known event types: the reference domain's, and those registered with :meth:`register`.

    A type is a dotted lower-case name, ``<entity>.<what happened>``. Publishing,
    subscribing and decoding all refuse a type that is not known, so a typo fails where
    it is written instead of as an event nobody handles.
    """

    USER_CREATED: ClassVar[str] = "user.created"
    USER_UPDATED: ClassVar[str] = "user.updated"
    USER_DELETED: ClassVar[str] = "user.deleted"
    CHALLENGE_CREATED: ClassVar[str] = "challenge.created"
    CHALLENGE_UPDATED: ClassVar[str] = "challenge.updated"
    CHALLENGE_DELETED: ClassVar[str] = "challenge.deleted"
    EVALUATION_COMPLETED: ClassVar[str] = "evaluation.completed"
    EVALUATION_DELETED: ClassVar[str] = "evaluation.deleted"

    _known: ClassVar[set[str]] = {
        "user.created",
        "user.updated",
        "user.deleted",
        "challenge.created",
        "challenge.updated",
        "challenge.deleted",
        "evaluation.completed",
        "evaluation.deleted",
    }

    @classmethod
    def register(cls, name: str) -> str:
        """Make ``name`` a known type (registering it twice is harmless); returns it."""
        cls._known.add(check_type_name(name))
        return name

    @classmethod
    def is_known(cls, name: str) -> bool:
        return name in cls._known

    @classmethod
    def known(cls) -> frozenset[str]:
        return frozenset(cls._known)

    @classmethod
    def require(cls, name: object) -> str:
        """``name`` if it is a known type; otherwise an error that says how to fix it."""
        type_name = check_type_name(name)
        if type_name not in cls._known:
            raise InvalidEventError(
                f"unknown event type {type_name!r}: register it with EventTypes.register({type_name!r})"
            )
        return type_name


def check_type_name(name: object) -> str:
    if not isinstance(name, str) or _TYPE_NAME.fullmatch(name) is None:
        raise InvalidEventError(
            f"an event type is a dotted lower-case name such as 'user.updated', not {name!r}"
        )
    return name


def _new_id() -> str:
    # 128 random bits, as uuid4 but without its system call (a third of an event's cost);
    # the random module reseeds itself in a forked child, so processes do not repeat ids.
    return f"{random.getrandbits(128):032x}"


@dataclass(frozen=True)
class Event:
    """``type`` happened, with ``data``; ``id`` is unique, ``occurred_at`` in epoch seconds.

    ``source`` names the publisher (a service, a process). ``data`` holds JSON values
    (dict with string keys, list, str, int, float, bool, None): it is checked here, so a
    value that would not survive the trip to another process fails in the publisher.
    """

    type: str
    data: Mapping[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=_new_id)
    occurred_at: float = field(default_factory=time.time)
    source: str = ""

    def __post_init__(self) -> None:
        EventTypes.require(self.type)
        if not isinstance(self.data, Mapping):
            raise InvalidEventError(
                f"event {self.type}: data must be a mapping, not {type(self.data).__name__}"
            )
        _check_json(self.data, f"event {self.type}: data")
        if not isinstance(self.id, str) or _ID.fullmatch(self.id) is None:
            raise InvalidEventError(
                f"event {self.type}: id must be 1 to 128 letters, digits or ._:- characters, not {self.id!r}"
            )
        occurred = self.occurred_at
        if (
            isinstance(occurred, bool)
            or not isinstance(occurred, (int, float))
            or not math.isfinite(occurred)
        ):
            raise InvalidEventError(
                f"event {self.type}: occurred_at must be epoch seconds (a finite number), not {occurred!r}"
            )
        if not isinstance(self.source, str):
            raise InvalidEventError(
                f"event {self.type}: source must be a string, not {self.source!r}"
            )

    def as_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "data": self.data,
            "id": self.id,
            "occurred_at": self.occurred_at,
            "source": self.source,
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, payload: str | bytes) -> Event:
        """The event encoded in ``payload``; :class:`InvalidEventError` saying what is wrong."""
        try:
            fields = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidEventError(f"not JSON: {exc}") from None
        if not isinstance(fields, dict):
            raise InvalidEventError(f"not a JSON object but {type(fields).__name__}")
        missing = [name for name in _FIELDS if name not in fields]
        if missing:
            raise InvalidEventError(f"missing fields: {', '.join(missing)}")
        extra = sorted(set(fields) - set(_FIELDS))
        if extra:
            raise InvalidEventError(f"unexpected fields: {', '.join(extra)}")
        return cls(**fields)

    def describe(self) -> str:
        """A short line for logs: type, id, source."""
        return f"{self.type} {self.id}" + (f" from {self.source}" if self.source else "")


def _check_json(value: Any, where: str) -> None:
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidEventError(f"{where} holds {value!r}, which JSON cannot carry")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidEventError(f"{where} has the key {key!r}: JSON keys are strings")
            _check_json(item, f"{where}[{key!r}]")
        return
    if isinstance(value, list):  # not tuples: they would come back as lists, unequal
        for index, item in enumerate(value):
            _check_json(item, f"{where}[{index}]")
        return
    raise InvalidEventError(
        f"{where} holds a {type(value).__name__}, which JSON cannot carry (use str, int, float, bool, None, list or dict)"
    )


@dataclass(frozen=True)
class DeadLetter:
    """A message given up on: its payload as it was, why, and after how many deliveries."""

    id: str
    reason: str
    deliveries: int
    payload: str
    event: Event | None  # None when the payload was not a valid event


class EventMetrics:
    """What the bus and its transport count; ``snapshot()`` is JSON-ready.

    Its keys, their help text and their Prometheus names are ``EVENT_METRICS`` in the one
    metric table (:mod:`freshcache._metrics`).
    """

    HELP: ClassVar[dict[str, str]] = {metric.key: metric.help for metric in EVENT_METRICS}

    def __init__(self) -> None:
        self.lag = Histogram()
        self.reset()

    def reset(self) -> None:
        self.published = 0
        self.delivered = 0
        self.handler_calls = 0
        self.handler_failures: dict[str, int] = {}
        self.handler_timeouts = 0
        self.redeliveries = 0
        self.dead_lettered = 0
        self.lag_last = 0.0
        self.lag_max = 0.0
        self.lag_sum = 0.0
        self.lag.reset()

    def failed(self, event_type: str) -> None:
        self.handler_failures[event_type] = self.handler_failures.get(event_type, 0) + 1

    def observe_lag(self, seconds: float) -> None:
        seconds = max(0.0, seconds)  # clocks of two machines disagree a little
        self.lag_last = seconds
        self.lag_max = max(self.lag_max, seconds)
        self.lag_sum += seconds
        self.lag.observe(seconds)

    def snapshot(self) -> dict[str, Any]:
        return {
            "published": self.published,
            "delivered": self.delivered,
            "handler_calls": self.handler_calls,
            "handler_failures": dict(self.handler_failures),
            "handler_timeouts": self.handler_timeouts,
            "redeliveries": self.redeliveries,
            "dead_lettered": self.dead_lettered,
            "lag_seconds": {
                "last": self.lag_last,
                "max": self.lag_max,
                "mean": self.lag_sum / self.delivered if self.delivered else 0.0,
            },
            "lag": self.lag.snapshot(),
        }


def invalidation_handlers(
    bus: Any, manager: Any, mapping: Mapping[str, Any], **options: Any
) -> Any:
    """Wire event types to entity invalidations on ``bus``, through ``manager`` (async or sync, alike).

    See :mod:`freshcache._async.events.wiring`; returns a function that unsubscribes them.
    """
    from ._async.events.bus import AsyncEventBus
    from ._async.events.wiring import invalidation_handlers as async_wiring
    from ._async.manager import AsyncInvalidationManager
    from ._sync.events.bus import EventBus
    from ._sync.events.wiring import invalidation_handlers as sync_wiring
    from ._sync.manager import InvalidationManager

    if isinstance(bus, AsyncEventBus) and isinstance(manager, AsyncInvalidationManager):
        return async_wiring(bus, manager, mapping, **options)
    if isinstance(bus, EventBus) and isinstance(manager, InvalidationManager):
        return sync_wiring(bus, manager, mapping, **options)
    raise ConfigurationError(
        f"invalidation_handlers needs an AsyncEventBus with an AsyncInvalidationManager, or an "
        f"EventBus with an InvalidationManager, not {type(bus).__name__} with {type(manager).__name__}"
    )
