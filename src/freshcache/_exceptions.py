"""The exceptions freshcache raises; every one derives from :class:`FreshcacheError`.

::

    FreshcacheError
    ├── ConfigurationError        a URL, an option or a rule that cannot work
    ├── InvalidKeyError           a key, tag, pattern or template that breaks the rules
    ├── InvalidEntityError        values that an entity's model does not have
    ├── InvalidEventError         an event, or an encoded one, that breaks the rules
    ├── ConflictError             a write the database refused as conflicting (a unique key)
    ├── DatabaseError             any other failure of the database behind a repository
    ├── SerializationError        a value that cannot be encoded or decoded
    │   └── SignatureError        a signed payload that is unsigned or tampered with
    └── BackendError              the cache server failed or could not be reached
        ├── BackendTimeoutError   ... in time
        └── BackendUnavailableError  not asked: it failed moments ago (circuit breaker)

Foreign errors (redis, sqlalchemy) are turned into these at the boundary by
:class:`map_exceptions`, so callers catch one family.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import TracebackType
from typing import NoReturn


class FreshcacheError(Exception):
    """The root of every error freshcache raises."""


class ConfigurationError(FreshcacheError, ValueError):
    pass


class InvalidKeyError(FreshcacheError, ValueError):
    pass


class InvalidEntityError(FreshcacheError, ValueError):
    pass


class InvalidEventError(FreshcacheError, ValueError):
    """An event, or an encoded one, that breaks the rules: the message names what is wrong."""


# The database (at a repository's boundary)


class ConflictError(FreshcacheError):
    pass


class DatabaseError(FreshcacheError):
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


class map_exceptions:  # lower case, like contextlib.suppress: it reads as a statement
    """Re-raise a foreign exception as the first freshcache exception mapped to its type.

    ``with map_exceptions({OSError: BackendError}, source="redis"):``. The original is
    chained as ``__cause__``. ``accept`` can refuse a match, for foreign types too broad
    to map whole (a RuntimeError is the server's failure only when it is about the event
    loop). One instance can be kept and reused: entering it allocates nothing, which
    matters on a hit path.
    """

    __slots__ = ("_accept", "_mapping", "_source")

    def __init__(
        self,
        mapping: Mapping[type[BaseException], type[FreshcacheError]],
        *,
        source: str = "",
        accept: Callable[[BaseException], bool] | None = None,
    ) -> None:
        self._mapping = tuple(mapping.items())
        self._source = f"{source}: " if source else ""
        self._accept = accept

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            self._raise_mapped(exc)

    def reraise(self, exc: BaseException) -> NoReturn:
        """Raise ``exc`` mapped, or as it is: for ``except`` blocks on a hit path, where the
        ``with`` statement's two calls would cost a fifth of a microsecond on every hit."""
        self._raise_mapped(exc)
        raise exc

    def _raise_mapped(self, exc: BaseException) -> None:
        if isinstance(exc, FreshcacheError) or not isinstance(exc, Exception):
            return  # ours already, or a cancellation: let it through unchanged
        if self._accept is not None and not self._accept(exc):
            return
        for from_type, to_type in self._mapping:
            if isinstance(exc, from_type):
                raise to_type(f"{self._source}{type(exc).__name__}: {exc}") from exc
