"""How values are encoded into keys and tags: valid, injective and reversible, for every column type."""

from __future__ import annotations

import datetime
import decimal
import enum
import itertools
import random
import uuid
from typing import Any

import pytest
import sqlalchemy as sa

from freshcache import InvalidKeyError, Rules, Template, validate_key, validate_tag
from freshcache._keys import (
    MAX_KEY_LENGTH,
    MAX_TAG_LENGTH,
    decode_value,
    encode_value,
    validate_tags,
)


class Color(enum.Enum):
    RED = "r"
    GREEN = "g"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Mood(str, enum.Enum):
    GLAD = "glad"
    SAD = "so sad"


# Characters that break keys, globs, templates, percent-encoding or Unicode comparisons.
TRICKY_CHARACTERS = [
    "a", "Z", "0", " ", "%", "%2", "%25", ":", "{", "}", "*", "?", "[", "]", "\\", "^", "!",
    "!none", "!empty", "#", "/", "+", "-", ".", "_", "~", "\t", "\n", "\x00", "\x7f", "é",
    "e\u0301", "中", "😀", "\u200b", "\ud800", "'", '"', "=", "&",
]  # fmt: skip


def tricky_strings() -> list[str]:
    """Every tricky character alone and in pairs, the empty string, and random mixtures."""
    strings = {"", *TRICKY_CHARACTERS}
    strings.update(a + b for a, b in itertools.product(TRICKY_CHARACTERS, repeat=2))
    generator = random.Random(7)
    for _ in range(2000):
        strings.add(
            "".join(generator.choice(TRICKY_CHARACTERS) for _ in range(generator.randint(1, 6)))
        )
    return sorted(strings)


DISTINCT_VALUES: dict[type[Any], list[Any]] = {
    int: [0, 1, -1, 5, 10, 2**63, -(2**70), 12345678901234567890],
    bool: [True, False],
    bytes: [b"", b"\x00", b"\x00\x00", b"%", b"a b", b"\xff\xfe", "é".encode(), b"abc"],
    uuid.UUID: [uuid.UUID(int=0), uuid.UUID(int=1), uuid.UUID("3f2504e0-4f89-11d3-9a0c-0305e82c3301")],
    decimal.Decimal: [decimal.Decimal(text) for text in
                      ["0", "1.5", "-1.5", "0.001", "1E+30", "1.2345678901234567890123456789012345",
                       "1.2345678901234567890123456789012346", "NaN", "1E+999999999", "-2.50E-999999999", "Infinity", "-Infinity"]],
    float: [0.0, float("nan"), 0.1, -0.1, 1.5, 1e-05, 1e300, 2.0**60, float("inf"), float("-inf")],
    datetime.date: [datetime.date(2024, 1, 5), datetime.date(1, 1, 1), datetime.date(9999, 12, 31)],
    datetime.datetime: [datetime.datetime(2024, 1, 5, 10, 0), datetime.datetime(2024, 1, 5, 10, 0, 0, 1),
                        datetime.datetime(2024, 1, 5, 10, 0, tzinfo=datetime.timezone.utc)],
    datetime.time: [datetime.time(0, 0), datetime.time(23, 59, 59, 999999),
                    datetime.time(10, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))],
    datetime.timedelta: [datetime.timedelta(0), datetime.timedelta(days=1), datetime.timedelta(microseconds=-1)],
    Color: list(Color),
    Level: list(Level),
    Mood: list(Mood),
}  # fmt: skip


def test_strings_encode_injectively_into_valid_tags() -> None:
    """Thousands of distinct tricky strings give as many distinct texts, each valid in a key, and decode back."""
    strings = tricky_strings()
    encoded = [encode_value(text) for text in strings]
    assert len(strings) == len(set(encoded))
    for text, value in zip(encoded, strings, strict=True):
        assert text == validate_key(text)
        assert value == decode_value(text, str)


@pytest.mark.parametrize("kind", list(DISTINCT_VALUES), ids=lambda kind: kind.__name__)
def test_each_type_encodes_injectively_and_reversibly(kind: type[Any]) -> None:
    """Distinct values of a type give distinct valid texts, and each text decodes to an equal value."""
    values = DISTINCT_VALUES[kind]
    encoded = [encode_value(value) for value in values]
    assert len(values) == len(set(encoded))
    for text, value in zip(encoded, values, strict=True):
        assert text == validate_key(text)
        decoded = decode_value(text, kind)
        assert value == decoded or (value != value and decoded != decoded)  # NaN
        assert kind is type(decoded)


def test_none_has_a_text_no_other_value_has() -> None:
    """None encodes as ``!none`` and decodes back to None whatever the type asked for."""
    assert "!none" == encode_value(None)
    assert "!none" not in {encode_value(text) for text in tricky_strings()}
    assert None is decode_value("!none", int)


@pytest.mark.parametrize(
    ("values", "text"),
    [
        ([5, "5", 5.0, decimal.Decimal("5.00"), decimal.Decimal("5")], "5"),
        ([Level.HIGH, 2], "2"),
        ([decimal.Decimal("1.5"), decimal.Decimal("1.50"), decimal.Decimal("15E-1"), 1.5], "1.5"),
        ([decimal.Decimal("0"), decimal.Decimal("-0.00"), 0, -0.0], "0"),
        ([decimal.Decimal("1E+2000"), decimal.Decimal("10.0E+1999")], "1E2000"),
        (
            [decimal.Decimal("-2.50E-999999999"), decimal.Decimal("-25E-1000000000")],
            "-25E-1000000000",
        ),
        (
            [
                datetime.datetime(2024, 1, 5, 12, 0, tzinfo=datetime.timezone.utc),
                datetime.datetime(
                    2024, 1, 5, 14, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=2))
                ),
            ],
            "2024-01-05T12%3A00%3A00%2B00%3A00",
        ),
        (
            [uuid.UUID("3F2504E0-4F89-11D3-9A0C-0305E82C3301")],
            "3f2504e0-4f89-11d3-9a0c-0305e82c3301",
        ),
        ([Color.RED], "RED"),
        ([Mood.SAD, "so sad"], "so%20sad"),
        ([True], "true"),
    ],
)
def test_equal_values_encode_alike(values: list[Any], text: str) -> None:
    """Equal values of different types agree, so an id given as a string or a Decimal finds the entity's tag."""
    assert {text} == {encode_value(value) for value in values}


def test_template_never_refuses_a_value_it_can_encode() -> None:
    """Values that were refused before (None, bool, spaces, braces, non-ASCII, UUID) make valid keys and tags."""
    tag = Template("user:{id}:challenges", kind="tag")
    key = Template("user:{id}", kind="key")
    for value in [None, True, "a b", "{x}", "*", "é", "a:b", uuid.uuid4(), b"\x00", 1.5]:
        assert validate_tag(tag.format({"id": value})) == tag.format({"id": value})
        assert validate_key(key.format({"id": value})) == key.format({"id": value})
    assert "user:a%3Ab:challenges" == tag.format({"id": "a:b"})


def test_composite_templates_are_injective() -> None:
    """Two placeholders never trade characters: ("a:b", "c") and ("a", "b:c") give different tags."""
    template = Template("pair:{left}:{right}", kind="tag")
    strings = [text for text in tricky_strings() if len(text) <= 2][:200]
    tags = {template.format({"left": a, "right": b}) for a in strings for b in strings}
    assert len(strings) ** 2 == len(tags)


@pytest.mark.parametrize("text", ["{a}{b}", "x:{a}-{b}", "{a}.{b}", "{a}!{b}", "{a}%{b}"])
def test_adjacent_placeholders_need_a_separator(text: str) -> None:
    """A template whose placeholders are not separated by a character values never hold is refused up front."""
    with pytest.raises(InvalidKeyError, match="must be separated by one of"):
        Template(text)


def test_overlong_results_end_in_a_digest() -> None:
    """A formatted key or tag over its limit keeps its prefix and ends in a SHA-256 of the whole, still distinct."""
    tag = Template("user:{id}", kind="tag")
    key = Template("user:{id}", kind="key")
    long_a, long_b = "中" * 300, "中" * 299 + "文"
    tags = {tag.format({"id": long_a}), tag.format({"id": long_b})}
    assert 2 == len(tags)
    for each in tags:
        assert MAX_TAG_LENGTH == len(validate_tag(each))
        assert each.startswith("user:%E4%B8%AD")
        assert "!sha256:" in each
    assert MAX_KEY_LENGTH == len(validate_key(key.format({"id": long_a})))


def test_unsupported_values_are_refused_with_their_type() -> None:
    """A value no column maps to (a dict, an object) is refused with its placeholder and the types allowed."""
    with pytest.raises(
        InvalidKeyError, match=r"'user:\{id\}'.*a dict .* placeholders take str, int"
    ):
        Template("user:{id}").format({"id": {"a": 1}})


@pytest.mark.parametrize(
    "tag", ["a b", "a*", "a{b}", "é", "", "a:b?", "x" * (MAX_TAG_LENGTH + 1), "a\\b", "a[1]"]
)
def test_literal_tags_are_still_validated(tag: str) -> None:
    """Tags given as they are (not through a template) are still refused when outside the alphabet."""
    with pytest.raises(InvalidKeyError):
        validate_tags([tag])
    with pytest.raises(InvalidKeyError):
        validate_key(tag * 3)


def test_rules_encode_like_the_repository_and_the_manager() -> None:
    """A change's tags, formatted by Rules from attribute values, encode ids as a template does."""
    rules = Rules().entity("doc", tags=["doc:{id}", "owner:{owner}:docs"])
    key = uuid.UUID("3f2504e0-4f89-11d3-9a0c-0305e82c3301")
    tags = rules.tags_for("doc", new={"id": key, "owner": "Zoë Ünal"})
    assert (
        "doc:3f2504e0-4f89-11d3-9a0c-0305e82c3301",
        "owner:Zo%C3%AB%20%C3%9Cnal:docs",
    ) == tags
    assert tags[0] == Template("doc:{id}", kind="tag").format({"id": key})


SAMPLES: dict[type[Any], Any] = {
    int: -12, str: "Zoë {x}", bool: False, bytes: b"\x00\xff", uuid.UUID: uuid.UUID(int=5),
    decimal.Decimal: decimal.Decimal("-1.25"), float: 2.5, datetime.date: datetime.date(2024, 2, 29),
    datetime.datetime: datetime.datetime(2024, 2, 29, 23, 59, 59, 5), datetime.time: datetime.time(1, 2),
    datetime.timedelta: datetime.timedelta(hours=-3), Color: Color.GREEN,
}  # fmt: skip


@pytest.mark.parametrize(
    "column_type",
    [sa.Integer(), sa.BigInteger(), sa.SmallInteger(), sa.String(10), sa.Text(), sa.Unicode(10),
     sa.Uuid(), sa.LargeBinary(), sa.Date(), sa.DateTime(), sa.DateTime(timezone=True), sa.Time(),
     sa.Interval(), sa.Numeric(10, 2), sa.Float(), sa.Boolean(), sa.Enum(Color)],
    ids=repr,
)  # fmt: skip
def test_every_default_column_type_formats_into_a_tag(
    column_type: sa.types.TypeEngine[Any],
) -> None:
    """A value of each column type SQLAlchemy maps by default makes a valid tag that decodes back to it."""
    python_type = column_type.python_type
    value = SAMPLES[python_type]
    tag = Template("row:{id}:{id2}", kind="tag").format({"id": value, "id2": value})
    text = tag.split(":")[1]
    assert tag == validate_tag(tag)
    assert value == decode_value(text, python_type)
