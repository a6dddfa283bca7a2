"""Key, tag and pattern validation, and templates."""

from __future__ import annotations

import uuid

import pytest

from freshcache import InvalidKeyError, Template, validate_key, validate_pattern, validate_tag
from freshcache._keys import MAX_KEY_LENGTH, MAX_TAG_LENGTH, validate_tags


@pytest.mark.parametrize(
    "key", ["user:1", "a", "user:42:challenges", "x" * MAX_KEY_LENGTH, "a.b-c_d/e@f=g+h,i|j#k"]
)
def test_valid_keys_pass_unchanged(key: str) -> None:
    """A key in the alphabet and within the limit is returned as given."""
    assert key == validate_key(key)


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("", "must not be empty"),
        ("user 1", "' ' at position 4"),
        ("user:*", "'\\*' at position 5"),
        ("a{b}", "'\\{' at position 1"),
        ("tab\there", "'\\\\t' at position 3"),
        ("caf\u00e9", "'\u00e9' at position 3"),
        ("x" * (MAX_KEY_LENGTH + 1), f"the limit is {MAX_KEY_LENGTH}"),
        (42, "must be a str, not int"),
        (None, "must be a str, not NoneType"),
    ],
)
def test_invalid_keys_say_what_is_wrong(key: object, message: str) -> None:
    """Each kind of bad key raises InvalidKeyError with a message naming the fault."""
    with pytest.raises(InvalidKeyError, match=message):
        validate_key(key)


def test_tags_have_their_own_limit() -> None:
    """Tags are limited to MAX_TAG_LENGTH characters, fewer than keys."""
    assert "t" * MAX_TAG_LENGTH == validate_tag("t" * MAX_TAG_LENGTH)
    with pytest.raises(InvalidKeyError, match=f"tag is {MAX_TAG_LENGTH + 1} characters"):
        validate_tag("t" * (MAX_TAG_LENGTH + 1))


def test_validate_tags_dedupes_in_order_and_refuses_a_bare_string() -> None:
    """Duplicate tags collapse keeping first order; a str in place of a list is an error."""
    assert ("b", "a") == validate_tags(["b", "a", "b"])
    assert () == validate_tags(None)
    with pytest.raises(InvalidKeyError, match="list of strings, not the string 'user:1'"):
        validate_tags("user:1")


def test_patterns_allow_globs_but_star_alone_needs_confirmation() -> None:
    """Glob characters are allowed in patterns; '*' alone needs confirm_all."""
    assert "user:*:c?[ab]" == validate_pattern("user:*:c?[ab]")
    with pytest.raises(InvalidKeyError, match="confirm_all=True"):
        validate_pattern("**")
    assert "*" == validate_pattern("*", confirm_all=True)


def test_template_formats_from_values() -> None:
    """A template fills its placeholders from a mapping, ints and strings alike."""
    template = Template("user:{id}:challenges:{kind}")
    assert ("id", "kind") == template.fields
    assert "user:7:challenges:open" == template.format({"id": 7, "kind": "open", "extra": 1})


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, "needs id; got nothing"),
        ({"id": {"a": 1}}, r"'user:\{id\}': a dict"),
        ({"id": object()}, r"'user:\{id\}': a object"),
    ],
)
def test_template_refuses_bad_values(values: dict[str, object], message: str) -> None:
    """Missing values, and values of no column type, fail with a message naming the template."""
    with pytest.raises(InvalidKeyError, match=message):
        Template("user:{id}", kind="tag").format(values)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("user:{id.name}", "must be a plain name"),
        ("user:{id!r}", "must be a plain name"),
        ("user:{0}", "must be a plain name"),
        ("user:{id", "malformed"),
        ("user *:{id}", "' ' at position 4"),
    ],
)
def test_malformed_templates_are_refused(text: str, message: str) -> None:
    """Attribute access, conversions, positions and broken braces are refused up front."""
    with pytest.raises(InvalidKeyError, match=message):
        Template(text)


KEYS = ["user:", "user:1", "user:2", "user:3", "user:12", "user:1:x", "users", "auser:1", "User:1",
        "user:bx", "user:dx", "abc", "a!c", "axc", "a*b", "axb", "a^c", "a-c", "a]c"]  # fmt: skip


@pytest.mark.parametrize(
    "pattern",
    ["user:*", "user:?", "user:[12]", "user:[^12]", "user:[a-c]x", "user:[c-a]x", "a[!b]c", "a\\*b",
     "User:*", "a[\\^]c", "a[-]c", "a[]c", "a[x", "*:*", "?????"],
)  # fmt: skip
def test_pattern_regex_matches_exactly_what_redis_matches(redis_url: str, pattern: str) -> None:
    """The memory backend's glob selects the same keys as Redis's SCAN MATCH on the real server."""
    import redis

    from freshcache._keys import pattern_regex

    client = redis.Redis.from_url(redis_url)
    prefix = f"globtest:{uuid.uuid4().hex}:"
    try:
        client.mset({prefix + key: 1 for key in KEYS})
        by_redis = sorted(
            name.decode()[len(prefix) :]
            for name in client.scan_iter(match=prefix + pattern, count=1000)
        )
    finally:
        client.delete(*[prefix + key for key in KEYS])
        client.close()

    regex = pattern_regex(pattern)
    assert by_redis == sorted(key for key in KEYS if regex.fullmatch(key))
