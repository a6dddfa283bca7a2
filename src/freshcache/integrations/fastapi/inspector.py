"""The inspector: why a key would miss now, and what a tag's state and history are."""

from __future__ import annotations

from typing import Any

from freshcache._inspection import KeyState, TagState

from .recent import RecentInvalidations
from .schemas import KeyAnswer, TagAnswer
from .sources import call


async def describe_key(cache: Any, key: str, recent: RecentInvalidations) -> KeyAnswer:
    state: KeyState = await call(cache.inspect_key, key)
    answer = state.as_dict()
    for tag in answer["tags"]:
        tag["recent_invalidations"] = recent.touching(tag["tag"], limit=5)
    return KeyAnswer.model_validate(answer)


async def describe_tag(cache: Any, tag: str, recent: RecentInvalidations) -> TagAnswer:
    state: TagState = await call(cache.inspect_tag, tag)
    return TagAnswer.model_validate(
        {**state.as_dict(), "recent_invalidations": recent.touching(tag)}
    )


def key_is_known(answer: KeyAnswer) -> bool:
    """A key with no entry and no loader on it is unknown: the answer is a 404 (with the same body)."""
    return answer.found or answer.lease is not None


def tag_is_known(answer: TagAnswer) -> bool:
    return answer.version is not None or answer.pending or bool(answer.recent_invalidations)
