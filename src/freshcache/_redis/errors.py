"""The one map from redis-py's errors to freshcache's, for every user of Redis.

A cache backend and an event transport on the same server fail the same way, so they
raise the same errors: a timeout is :class:`BackendTimeoutError`, any other failure of
the server or the connection :class:`BackendError`, with redis-py's error as the cause.
"""

from __future__ import annotations

import redis.exceptions

from freshcache._exceptions import BackendError, BackendTimeoutError, map_exceptions


def _is_redis_failure(exc: BaseException) -> bool:
    """A RuntimeError is the server's failure only when it is about the event loop.

    A client used from another event loop than the one it connected in (a cache built in
    one ``asyncio.run`` and used in the next) raises "Event loop is closed" or "attached
    to a different loop": the server is unreachable from here, so reads fall back.
    """
    return not isinstance(exc, RuntimeError) or "loop" in str(exc)


# NOSCRIPT never gets here: redis-py loads the script and retries inside the call.
redis_errors = map_exceptions(
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
