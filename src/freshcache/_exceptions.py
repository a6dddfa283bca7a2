"""The exceptions freshcache raises; every one derives from :class:`FreshcacheError`.

::

    FreshcacheError
    ├── ConfigurationError        a URL, an option or a rule that cannot work
    ├── InvalidKeyError           a key, tag, pattern or template that breaks the rules
    ├── InvalidEntityError        values that an entity's model does not have
    ├── SerializationError        a value that cannot be encoded or decoded
    │   └── SignatureError        a signed payload that is unsigned or tampered with
    ├── BackendError              the cache server failed or could not be reached
    │   ├── BackendTimeoutError   ... in time
    │   └── BackendUnavailableError  not asked: it failed moments ago (circuit breaker)
    ├── LoaderError               a loader raised (the original is its __cause__)
    └── LeaseTimeoutError         a waiter gave up waiting for another loader

Foreign errors (redis, sqlalchemy) are turned into these at the boundary by
:func:`map_exceptions`, so callers catch one family.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping


class FreshcacheError(Exception):
    """The root of every error freshcache raises."""


class ConfigurationError(FreshcacheError, ValueError):
    pass


class InvalidKeyError(FreshcacheError, ValueError):
    pass


class InvalidEntityError(FreshcacheError, ValueError):
    pass


# Values


class SerializationError(FreshcacheError):
    pass


class SignatureError(SerializationError):
    pass


# The cache server


class BackendError(FreshcacheError):
    pass


class BackendTimeoutError(BackendError):
    pass


class BackendUnavailableError(BackendError):
    pass


# Loading


class LoaderError(FreshcacheError):
    pass


class LeaseTimeoutError(FreshcacheError):
    pass


@contextlib.contextmanager
def map_exceptions(mapping: Mapping[type[BaseException], type[FreshcacheError]]) -> Iterator[None]:
    """Re-raise a foreign exception as the first freshcache exception mapped to its type."""
    try:
        yield
    except FreshcacheError:
        raise
    except Exception as exc:
        for from_type, to_type in mapping.items():
            if isinstance(exc, from_type):
                raise to_type(f"{type(exc).__name__}: {exc}") from exc
        raise
