"""freshcache: cache-aside caching whose invalidation is correct by construction."""

import typing

from freshcache._async.backends.base import AsyncBackend
from freshcache._async.backends.memory import AsyncMemoryBackend
from freshcache._async.backends.null import AsyncNullBackend
from freshcache._async.cache import AsyncCache, AsyncCachedFunction
from freshcache._async.failures import AsyncFailureSink, AsyncRetryQueue
from freshcache._async.manager import (
    AsyncEntityInvalidator,
    AsyncInvalidationBatch,
    AsyncInvalidationManager,
)
from freshcache._async.monitor import AsyncConsistencyMonitor
from freshcache._entries import MISSING, PENDING_VERSION, FillStatus, FillTicket
from freshcache._exceptions import (
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    ConfigurationError,
    ConflictError,
    DatabaseError,
    FreshcacheError,
    InvalidEntityError,
    InvalidEventError,
    InvalidKeyError,
    SerializationError,
    SignatureError,
)
from freshcache._invalidations import EntityChange, Invalidation, PendingWrite
from freshcache._keys import Template, validate_key, validate_pattern, validate_tag
from freshcache._metrics import CacheMetrics, Histogram, ManagerMetrics
from freshcache._rules import Relation, Rule, Rules
from freshcache._serializers import (
    JSONSerializer,
    MsgpackSerializer,
    Serializer,
    SignedPickleSerializer,
    get_serializer,
)
from freshcache._sync.backends.base import Backend
from freshcache._sync.backends.memory import MemoryBackend
from freshcache._sync.backends.null import NullBackend
from freshcache._sync.cache import Cache, CachedFunction
from freshcache._sync.failures import FailureSink, RetryQueue
from freshcache._sync.manager import EntityInvalidator, InvalidationBatch, InvalidationManager
from freshcache._sync.monitor import ConsistencyMonitor

__version__ = "0.1.0"

__all__ = [
    "ConsistencyMonitor",
    "AsyncBackend",
    "AsyncCache",
    "AsyncCachedFunction",
    "AsyncConsistencyMonitor",
    "AsyncEntityInvalidator",
    "AsyncFailureSink",
    "AsyncInvalidationBatch",
    "AsyncInvalidationManager",
    "AsyncMemoryBackend",
    "AsyncNullBackend",
    "AsyncRetryQueue",
    "Backend",
    "BackendError",
    "BackendTimeoutError",
    "BackendUnavailableError",
    "Cache",
    "CacheMetrics",
    "CachedFunction",
    "ConfigurationError",
    "ConflictError",
    "DatabaseError",
    "EntityChange",
    "EntityInvalidator",
    "FailureSink",
    "FillStatus",
    "FillTicket",
    "FreshcacheError",
    "Histogram",
    "InvalidEntityError",
    "InvalidKeyError",
    "Invalidation",
    "InvalidationBatch",
    "InvalidationManager",
    "JSONSerializer",
    "MISSING",
    "ManagerMetrics",
    "MemoryBackend",
    "MsgpackSerializer",
    "NullBackend",
    "PENDING_VERSION",
    "PendingWrite",
    "Relation",
    "RetryQueue",
    "Rule",
    "Rules",
    "SerializationError",
    "Serializer",
    "SignatureError",
    "SignedPickleSerializer",
    "Template",
    "__version__",
    "get_serializer",
    "validate_key",
    "validate_pattern",
    "validate_tag",
]

# Domain events: the bus, its transports, the invalidation handlers.
from freshcache._async.events.bus import AsyncEventBus
from freshcache._async.events.transports.base import AsyncEventTransport
from freshcache._async.events.transports.memory import AsyncMemoryTransport
from freshcache._events import (
    DeadLetter,
    Event,
    EventMetrics,
    EventTypes,
    invalidation_handlers,
)
from freshcache._sync.events.bus import EventBus
from freshcache._sync.events.transports.base import EventTransport
from freshcache._sync.events.transports.memory import MemoryTransport

__all__ += [
    "AsyncEventBus",
    "AsyncEventTransport",
    "AsyncMemoryTransport",
    "DeadLetter",
    "Event",
    "EventBus",
    "EventMetrics",
    "EventTransport",
    "EventTypes",
    "InvalidEventError",
    "MemoryTransport",
    "invalidation_handlers",
]
__all__.sort()  # one sorted list, as tests/test_public_api.py checks

if typing.TYPE_CHECKING:
    # What ``__getattr__`` hands out on first use, typed for mypy as the classes they are
    # (``X as X``: a re-export, under strict mypy's no_implicit_reexport).
    from freshcache._async.backends.redis import AsyncRedisBackend as AsyncRedisBackend
    from freshcache._async.events.transports.redis_streams import (
        AsyncRedisStreamsTransport as AsyncRedisStreamsTransport,
    )
    from freshcache._sync.backends.redis import RedisBackend as RedisBackend
    from freshcache._sync.events.transports.redis_streams import (
        RedisStreamsTransport as RedisStreamsTransport,
    )


# The Redis classes need the optional redis package: imported on first use.
_ON_FIRST_USE = {
    "AsyncRedisBackend": "freshcache._async.backends.redis",
    "AsyncRedisStreamsTransport": "freshcache._async.events.transports.redis_streams",
    "RedisBackend": "freshcache._sync.backends.redis",
    "RedisStreamsTransport": "freshcache._sync.events.transports.redis_streams",
}


def __getattr__(name: str) -> object:
    module = _ON_FIRST_USE.get(name)
    if module is None:
        raise AttributeError(f"module 'freshcache' has no attribute {name!r}")
    import importlib

    from freshcache._extras import missing_extra

    try:
        import redis  # noqa: F401 - only to name the extra when it is missing
    except ImportError as exc:
        raise missing_extra(exc, "redis", f"freshcache.{name}") from exc
    return getattr(importlib.import_module(module), name)
