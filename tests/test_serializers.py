"""Serializers: JSON by default, msgpack, and pickle only when signed."""

from __future__ import annotations

import pickle

import pytest

from freshcache import (
    ConfigurationError,
    JSONSerializer,
    MsgpackSerializer,
    SerializationError,
    SignatureError,
    SignedPickleSerializer,
    get_serializer,
)

VALUE = {"name": "Zoë 🚀", "scores": [1, 2.5, None, True], "nested": {"k": "v" * 1000}}


@pytest.mark.parametrize(
    "serializer", [JSONSerializer(), MsgpackSerializer(), SignedPickleSerializer(b"k" * 32)]
)
def test_round_trip(serializer: JSONSerializer) -> None:
    """Every serializer gives back an equal value, unicode included."""
    assert VALUE == serializer.loads(serializer.dumps(VALUE))


def test_json_refuses_what_it_cannot_say() -> None:
    """JSON names the part and the type it cannot encode and refuses bytes that are not JSON."""
    with pytest.raises(
        SerializationError, match=r"value\[1\]: object is not supported by the json serializer"
    ):
        JSONSerializer().dumps([1, object()])
    with pytest.raises(SerializationError, match="not valid JSON"):
        JSONSerializer().loads(b"\xff{")


def test_msgpack_keeps_bytes() -> None:
    """msgpack carries bytes values, which JSON cannot."""
    serializer = MsgpackSerializer()
    assert {"raw": b"\x00\xff"} == serializer.loads(serializer.dumps({"raw": b"\x00\xff"}))


class Exploit:
    """A pickle payload that would run code when unpickled."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (exec, ("raise SystemExit('code ran')",))


def test_unsigned_pickle_is_refused_without_unpickling() -> None:
    """A raw pickle, as an attacker with Redis access would write it, is never unpickled."""
    serializer = SignedPickleSerializer(b"secret-key-0123456789")
    payload = pickle.dumps(Exploit())

    with pytest.raises(SignatureError, match="signature does not match"):
        serializer.loads(payload)
    with pytest.raises(SignatureError, match="carries no signature"):
        serializer.loads(b"short")


def test_tampered_or_foreign_pickle_is_refused() -> None:
    """Changing one byte, or signing with another key, fails the signature check."""
    serializer = SignedPickleSerializer(b"secret-key-0123456789")
    signed = bytearray(serializer.dumps({"admin": False}))
    signed[-3] ^= 0x01

    with pytest.raises(SignatureError, match="tampered"):
        serializer.loads(bytes(signed))
    other = SignedPickleSerializer(b"another-key-0123456789")
    with pytest.raises(SignatureError, match="another key"):
        serializer.loads(other.dumps({"admin": True}))


def test_pickle_needs_a_real_key() -> None:
    """The pickle serializer is refused without a key, or with a short one."""
    with pytest.raises(ConfigurationError, match="signing key"):
        get_serializer("pickle")
    with pytest.raises(ConfigurationError, match="at least 16 bytes"):
        SignedPickleSerializer("short")


def test_get_serializer_by_name() -> None:
    """Serializers are found by name; an unknown name lists the choices."""
    assert "json" == get_serializer("json").name
    assert "msgpack" == get_serializer("msgpack").name
    assert "pickle" == get_serializer("pickle", key="k" * 16).name
    with pytest.raises(ConfigurationError, match="choose json, msgpack or pickle"):
        get_serializer("yaml")
