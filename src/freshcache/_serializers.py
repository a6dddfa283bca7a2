"""How values become bytes for a cache server: JSON (default), msgpack, signed pickle.

JSON and msgpack carry the same values exactly (see :mod:`freshcache._values`); pickle
carries anything picklable.

Pickle is opt-in and always signed: a payload is unpickled only after its HMAC-SHA256
checks out, because unpickling bytes that anyone with write access to a shared Redis
could have written is remote code execution.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import pickle
from typing import Any, Protocol, runtime_checkable

from ._exceptions import ConfigurationError, SerializationError, SignatureError
from ._values import from_tree, to_tree


@runtime_checkable
class Serializer(Protocol):
    """Turns values into bytes and back. ``name`` is written into every stored entry.

    ``key`` names where the bytes are stored (on Redis the full key, namespace included):
    a serializer that signs binds its signature to it, so bytes copied under another key
    are refused. A value comes back equal and of the same type, or ``dumps`` raises
    :class:`SerializationError` naming the part it cannot carry.
    """

    name: str

    def dumps(self, value: Any, key: str = "") -> bytes: ...

    def loads(self, data: bytes, key: str = "") -> Any: ...


class JSONSerializer:
    """Compact UTF-8 JSON, through orjson when it is installed (the ``redis`` extra brings it).

    Plain JSON values are written as they are and read back with one ``orjson.loads``;
    the other types of :mod:`freshcache._values` are written as a tree behind a ``~``.
    orjson decodes a small payload five times faster than the standard library, which on
    the Redis hit path is the difference between one round trip and one and a tenth.
    """

    name = "json"

    def __init__(self) -> None:
        try:
            import orjson
        except ImportError:  # pragma: no cover - depends on the environment
            self._encode: Any = self._encode_stdlib
            self._decode: Any = json.loads
        else:
            self._encode = orjson.dumps
            self._decode = orjson.loads

    @staticmethod
    def _encode_stdlib(value: Any) -> bytes:  # pragma: no cover - without orjson only
        return json.dumps(
            value, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode()

    def dumps(self, value: Any, key: str = "") -> bytes:
        is_tree, tree = to_tree(value, self.name, binary=False)
        try:
            # "~" flags a tree: no JSON text starts with it.
            return b"~" + self._encode(tree) if is_tree else bytes(self._encode(tree))
        except (TypeError, ValueError) as exc:  # a str with lone surrogates, deep nesting
            raise SerializationError(f"value cannot be written as JSON: {exc}") from exc

    def loads(self, data: bytes, key: str = "") -> Any:
        try:
            if data[:1] != b"~":
                return self._decode(data)
            return from_tree(self._decode(data[1:]))
        except (UnicodeDecodeError, ValueError) as exc:  # orjson.JSONDecodeError is a ValueError
            raise SerializationError(f"stored payload is not valid JSON: {exc}") from exc


class MsgpackSerializer:
    """msgpack (the ``msgpack`` extra): smaller and faster than JSON, binary-safe.

    It carries the same values as JSON: plain ones as they are, the others as the tree of
    :mod:`freshcache._values` inside an ext of type 1 (bytes stay bytes there).
    """

    name = "msgpack"

    def __init__(self) -> None:
        try:
            import msgpack
        except ImportError:  # pragma: no cover - depends on the environment
            raise ConfigurationError(
                "the msgpack serializer needs the msgpack package: pip install 'freshcache[msgpack]'"
            ) from None
        self._msgpack = msgpack
        self._ext = msgpack.ExtType

    def dumps(self, value: Any, key: str = "") -> bytes:
        packb = self._msgpack.packb
        is_tree, tree = to_tree(value, self.name, binary=True)
        try:
            if not is_tree:
                return bytes(packb(tree, use_bin_type=True))
            inner = packb(tree, use_bin_type=True)
            return bytes(packb(self._ext(1, inner), use_bin_type=True))
        except (TypeError, ValueError, OverflowError) as exc:
            raise SerializationError(f"value cannot be written as msgpack: {exc}") from exc

    def loads(self, data: bytes, key: str = "") -> Any:
        try:
            value = self._msgpack.unpackb(data, raw=False)
            if type(value) is self._ext:
                return from_tree(self._msgpack.unpackb(value.data, raw=False))
            return value
        except SerializationError:
            raise
        except Exception as exc:  # msgpack raises several unrelated types
            raise SerializationError(f"stored payload is not valid msgpack: {exc}") from exc


class SignedPickleSerializer:
    """Pickle behind an HMAC-SHA256 signature; unsigned or tampered payloads are refused.

    The signature covers the key the payload is stored under, so a signed entry copied
    under another key (or into another namespace) is refused as well: pickle round-trips
    any picklable value, and it must not round-trip it to the wrong key.
    """

    name = "pickle"
    _DIGEST_SIZE = 32

    def __init__(self, key: bytes | str) -> None:
        if isinstance(key, str):
            key = key.encode()
        if not isinstance(key, bytes) or len(key) < 16:
            raise ConfigurationError(
                "the pickle serializer needs a secret key of at least 16 bytes"
            )
        self._key = key

    def _sign(self, body: bytes, key: str) -> bytes:
        where = key.encode()
        # Length first: (key, body) pairs that concatenate alike still sign differently.
        mac = hmac.new(self._key, b"%d:" % len(where), hashlib.sha256)
        mac.update(where)
        mac.update(body)
        return mac.digest()

    def dumps(self, value: Any, key: str = "") -> bytes:
        try:
            body = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # pickling can raise almost anything
            raise SerializationError(f"cannot pickle {type(value).__name__}: {exc}") from exc
        return self._sign(body, key) + body

    def loads(self, data: bytes, key: str = "") -> Any:
        if len(data) <= self._DIGEST_SIZE:
            raise SignatureError("refused to unpickle: the payload carries no signature")
        signature, body = data[: self._DIGEST_SIZE], data[self._DIGEST_SIZE :]
        if not hmac.compare_digest(signature, self._sign(body, key)):
            raise SignatureError(
                "refused to unpickle: the signature does not match (tampered, signed with "
                f"another key, or copied from another key than {key!r})"
            )
        return pickle.loads(body)


def get_serializer(name: str, *, key: bytes | str | None = None) -> Serializer:
    """The serializer called ``name``: ``json``, ``msgpack`` or ``pickle`` (needs ``key``)."""
    if name == "json":
        return JSONSerializer()
    if name == "msgpack":
        return MsgpackSerializer()
    if name == "pickle":
        if key is None:
            raise ConfigurationError("the pickle serializer needs a signing key (pickle_key=...)")
        return SignedPickleSerializer(key)
    raise ConfigurationError(f"unknown serializer {name!r}; choose json, msgpack or pickle")
