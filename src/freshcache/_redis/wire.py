"""How an entry is stored in Redis: the versions of its tags in a text header, then the payload.

::

    fc1 <serializer> <n>\\n
    <tag> <version>\\n          (n lines)
    <payload>

A client that knows the tags checks an entry after one MGET of the entry and the tags'
versions; a Lua script that does not (:mod:`.scripts`) still parses the header. Tags and
versions never hold white space, so the header is unambiguous.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from freshcache._exceptions import SerializationError

MAGIC: Final = b"fc1"
# Tag sets are few, but keys may carry ids into them: the cache of headers is bounded.
_MAX_HEADERS = 4096


def encode_entry(
    serializer_name: str, tags: Sequence[str], versions: Sequence[str], payload: bytes
) -> bytes:
    lines = [f"{MAGIC.decode()} {serializer_name} {len(tags)}"]
    lines.extend(f"{tag} {version}" for tag, version in zip(tags, versions, strict=True))
    return ("\n".join(lines) + "\n").encode() + payload


def decode_entry(data: bytes) -> tuple[str, list[tuple[bytes, bytes]], bytes]:
    """Split stored bytes into (serializer name, [(tag, version)], payload)."""
    try:
        end = data.index(b"\n")
        magic, serializer_name, count = data[:end].split(b" ")
        if magic != MAGIC:
            raise ValueError(f"unknown entry format {magic!r}")
        pairs = []
        position = end + 1
        for _ in range(int(count)):
            end = data.index(b"\n", position)
            tag, version = data[position:end].split(b" ")
            pairs.append((tag, version))
            position = end + 1
    except ValueError as exc:
        raise SerializationError(f"stored entry is not a freshcache entry: {exc}") from None
    return serializer_name.decode(), pairs, data[position:]


class HeaderParts:
    """The fixed bytes of the headers one serializer writes, around the versions, by tag set.

    The hit path puts the versions it read between them and compares the result with the
    start of the entry: one ``startswith`` instead of parsing the header.
    """

    __slots__ = ("_parts", "_start")

    def __init__(self, serializer_name: str) -> None:
        self._start = b"%s %s " % (MAGIC, serializer_name.encode())
        self._parts: dict[str | tuple[str, ...], list[bytes]] = {}

    def of(self, tags: Sequence[str]) -> list[bytes]:
        """``[head, after_version_1, ..., after_version_n]`` for an entry with these tags in this order."""
        cache_key: str | tuple[str, ...] = tags[0] if len(tags) == 1 else tuple(tags)
        parts = self._parts.get(cache_key)
        if parts is None:
            key = tuple(tags)
            encoded = [tag.encode() for tag in key]
            parts = (
                [b"%s%d\n%s " % (self._start, len(key), encoded[0])]
                if key
                else [b"%s0\n" % self._start]
            )
            parts.extend(b"\n%s " % tag for tag in encoded[1:])
            if key:
                parts.append(b"\n")
            if len(self._parts) >= _MAX_HEADERS:
                self._parts.clear()
            self._parts[cache_key] = parts
        return parts
