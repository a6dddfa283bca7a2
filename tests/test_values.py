"""Values through the serializers: equal and of the same type, or refused with the path of the part."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import enum
import math
from typing import Any

import orjson
import pytest
import redis.exceptions

from freshcache import (
    BackendError,
    BackendTimeoutError,
    JSONSerializer,
    MsgpackSerializer,
    SerializationError,
    SignatureError,
    SignedPickleSerializer,
)
from freshcache._redis.errors import redis_errors as _redis_errors
from freshcache.testing._async.suite import EVERY_KIND, type_shape

SERIALIZERS = [JSONSerializer(), MsgpackSerializer(), SignedPickleSerializer(b"k" * 32)]


@dataclasses.dataclass(frozen=True)
class Point:
    x: int


class Colour(enum.Enum):
    RED = "red"


class Name(str):
    pass


class Zone(datetime.tzinfo):
    def utcoffset(self, dt: datetime.datetime | None) -> datetime.timedelta:
        return datetime.timedelta(hours=1)


@pytest.mark.parametrize("serializer", SERIALIZERS, ids=lambda s: s.name)
@pytest.mark.parametrize("name", list(EVERY_KIND))
def test_every_kind_round_trips_with_its_types(serializer: Any, name: str) -> None:
    """Each kind of value the cache carries comes back equal and of the same types."""
    value = {"in a dict": EVERY_KIND[name], "in a list": [EVERY_KIND[name]]}

    got = serializer.loads(serializer.dumps(value, "k"), "k")

    assert value == got
    assert type_shape(value) == type_shape(got)


@pytest.mark.parametrize("serializer", SERIALIZERS, ids=lambda s: s.name)
def test_nan_comes_back_as_nan(serializer: Any) -> None:
    """NaN, which equals nothing, comes back a NaN float rather than null."""
    got = serializer.loads(serializer.dumps([math.nan], "k"), "k")

    assert float is type(got[0])
    assert math.isnan(got[0])


def test_plain_json_is_written_as_it_is() -> None:
    """A plain JSON value is stored as orjson writes it, so reading it is one orjson.loads."""
    value = {"id": 1, "name": "ada", "tags": ["a", None, True, 1.5], "~x": 2**63}

    assert orjson.dumps(value) == JSONSerializer().dumps(value)


@pytest.mark.parametrize("serializer", ["json", "msgpack"])
@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"a": [1, 2, 3, object()]}, r"value\['a'\]\[3\]: object is not supported"),
        ([Point(1)], r"value\[0\]: dataclass Point \(cache dataclasses.asdict\(\) of it"),
        ({"c": Colour.RED}, r"value\['c'\]: enum member Colour.RED \(cache its .value\)"),
        ({(1, Name("x")): 1}, r"value\.<key \(1, 'x'\)>\[1\]: Name, a subclass of str"),
        ({1: {2, Point(1)}}, r"value\[1\]\[\d\]: dataclass Point"),
        ([10**5000], r"value\[0\]: int of that many digits"),
        (
            (datetime.datetime(2024, 1, 1, tzinfo=Zone()),),
            r"value\[0\]: datetime with tzinfo Zone",
        ),
    ],
)
def test_what_cannot_be_carried_is_refused_with_its_path(
    serializer: str, value: Any, message: str
) -> None:
    """JSON and msgpack refuse what they cannot give back exactly, naming the part and the serializer."""
    chosen = JSONSerializer() if serializer == "json" else MsgpackSerializer()

    with pytest.raises(SerializationError, match=f"{message}.* by the {serializer} serializer"):
        chosen.dumps(value, "k")


def test_a_value_that_contains_itself_is_refused() -> None:
    """A list that contains itself is refused with a SerializationError, not a RecursionError."""
    loop: list[Any] = []
    loop.append(loop)

    with pytest.raises(SerializationError, match="nested too deeply"):
        JSONSerializer().dumps(loop, "k")


def test_an_unknown_type_tag_is_a_decode_error() -> None:
    """A stored tree with a tag this version does not know reads as a SerializationError."""
    with pytest.raises(SerializationError, match="unknown type tag '~nope'"):
        JSONSerializer().loads(b'~{"~nope":1}', "k")


def test_the_pickle_signature_covers_the_key() -> None:
    """A signed payload read under another key than the one it was written for is refused."""
    serializer = SignedPickleSerializer(b"k" * 32)
    payload = serializer.dumps({"role": "admin"}, "{fc}:e:user:1")

    assert {"role": "admin"} == serializer.loads(payload, "{fc}:e:user:1")
    for elsewhere in ("{fc}:e:user:2", "{other}:e:user:1", "{fc}:e:user:1 "):
        with pytest.raises(SignatureError, match="copied from another key"):
            serializer.loads(payload, elsewhere)


@pytest.mark.parametrize(
    ("error", "mapped"),
    [
        (redis.exceptions.ConnectionError("refused"), BackendError),
        (redis.exceptions.TimeoutError("slow"), BackendTimeoutError),
        (TimeoutError("slow"), BackendTimeoutError),
        (redis.exceptions.ResponseError("WRONGTYPE"), BackendError),
        (ConnectionResetError("reset"), BackendError),
        (RuntimeError("Event loop is closed"), BackendError),
        (RuntimeError("Task got Future attached to a different loop"), BackendError),
    ],
)
def test_every_redis_failure_becomes_a_backend_error(error: Exception, mapped: type) -> None:
    """Errors of the Redis client, event-loop errors included, become BackendError with the original as the cause."""
    with pytest.raises(BackendError) as raised, _redis_errors:
        raise error

    assert mapped is type(raised.value)
    assert error is raised.value.__cause__


@pytest.mark.parametrize(
    "error", [RuntimeError("something else"), KeyError("k"), asyncio.CancelledError()]
)
def test_other_errors_pass_through_unmapped(error: BaseException) -> None:
    """What is not the server's failure (a bug, a cancellation) is not disguised as a BackendError."""
    with pytest.raises(type(error)) as raised, _redis_errors:
        raise error

    assert error is raised.value
