"""The cached decorator encodes any argument into its keys and tags, on memory and Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from freshcache import AsyncCache, Template

ARGUMENTS = [uuid.UUID("3f2504e0-4f89-11d3-9a0c-0305e82c3301"), "Zoë 50% {x}*?", "", None, "a:b"]


@pytest.fixture
async def cache(cache_url: str) -> AsyncIterator[AsyncCache]:
    cache = AsyncCache.from_url(cache_url)
    await cache.clear()
    yield cache
    await cache.aclose()


async def test_any_argument_makes_a_key_and_tags(cache: AsyncCache) -> None:
    """UUIDs, text with spaces, globs or braces, the empty text and None are cached apart and invalidated by their tag."""
    calls: list[object] = []

    @cache.cached(key="owner:{owner}:docs", tags=["owner:{owner}"])
    async def docs(owner: object) -> str:
        calls.append(owner)
        return f"docs of {owner!r}"

    for owner in ARGUMENTS:
        assert f"docs of {owner!r}" == await docs(owner)
        assert f"docs of {owner!r}" == await docs(owner)
    assert ARGUMENTS == calls
    assert "owner:a%3Ab:docs" == docs.key_for("a:b")  # type: ignore[attr-defined]

    tag = Template("owner:{owner}", kind="tag")
    await cache.invalidate_tags([tag.format({"owner": ARGUMENTS[1]})])
    for owner in ARGUMENTS:
        await docs(owner)
    assert [*ARGUMENTS, ARGUMENTS[1]] == calls
