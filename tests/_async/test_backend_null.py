"""The null backend (``none``): the conformance suite where it applies, and caching off through the library."""

from __future__ import annotations

import pytest

from freshcache import (
    MISSING,
    AsyncCache,
    AsyncInvalidationManager,
    AsyncNullBackend,
    ConfigurationError,
    FillStatus,
)
from freshcache._async.backends.base import AsyncBackend
from freshcache.testing import AsyncBackendSuite

from ..rules import service_rules

# The suite's tests that read back what was stored: an entry, a tag's version, a pending
# mark, a lease, or a value refused at storing. A backend that never stores has none of
# these; every other test of the suite runs.
READ_BACK_WHAT_WAS_STORED = [
    "test_a_stored_value_is_a_copy",
    "test_a_value_it_cannot_carry_is_refused_before_it_is_stored",
    "test_begin_fill_answers_a_valid_entry_instead_of_a_lease",
    "test_begin_fill_creates_and_keeps_versions",
    "test_begin_fill_without_a_lease_ignores_leases",
    "test_clear_pending_without_a_mark",
    "test_commit_gives_a_new_version",
    "test_dead_writer_expires_after_another_commits",
    "test_delete_counts_the_entries_that_existed",
    "test_delete_pattern_question_mark",
    "test_delete_pattern_star",
    "test_deleting_a_key_fences_the_fill_in_flight",
    "test_deleting_by_pattern_fences_the_fills_in_flight",
    "test_describe_absent_key_shows_its_lease",
    "test_describe_key_and_tag_show_pending_holders",
    "test_describe_key_explains_a_stale_entry",
    "test_describe_key_of_a_fresh_entry_says_it_would_hit",
    "test_describing_changes_nothing",
    "test_entry_expires_after_its_ttl",
    "test_every_kind_of_value_round_trips_with_its_types",
    "test_expired_pending_mark_stops_blocking",
    "test_fill_by_a_non_holder_keeps_the_lease",
    "test_fill_is_rejected_when_any_tag_moved",
    "test_fill_replaces_the_previous_value",
    "test_fill_then_get",
    "test_fill_with_the_token_releases_the_lease",
    "test_get_many_leaves_out_misses",
    "test_invalidate_makes_dependent_entries_miss",
    "test_invalidate_of_unknown_tags_is_harmless",
    "test_invalidate_while_pending_stays_pending",
    "test_json_shaped_values_round_trip",
    "test_large_values_round_trip",
    "test_lease_expires_after_its_ttl",
    "test_lease_goes_to_the_first_token",
    "test_none_is_a_value_not_a_miss",
    "test_pattern_of_everything_needs_confirmation",
    "test_pending_tag_refuses_fills",
    "test_pending_until_the_last_writer_clears",
    "test_release_lease_only_by_its_holder",
    "test_restart_never_brings_back_an_old_version",
    "test_rollback_of_the_only_writer_restores",
    "test_stale_fill_is_rejected",
    "test_tag_versions_absent_current_and_pending",
    "test_tags_hint_does_not_change_the_answer",
    "test_unicode_values_round_trip",
    "test_versions_are_unique_across_invalidations",
]


class TestNullBackend(AsyncBackendSuite):
    async def make_backend(self) -> AsyncBackend:
        return AsyncNullBackend()

    async def evict_tag_version(self, backend: AsyncBackend, tag: str) -> None:
        return  # no version is ever kept

    async def restart(self, backend: AsyncBackend) -> AsyncBackend:
        return AsyncNullBackend()


for _name in READ_BACK_WHAT_WAS_STORED:
    setattr(TestNullBackend, _name, None)  # not a test: pytest collects callables only


def test_the_tests_left_out_are_the_suites() -> None:
    """Every test left out names a test of the suite, and most of the suite still runs."""
    suite = {name for name in dir(AsyncBackendSuite) if name.startswith("test_")}
    assert set(READ_BACK_WHAT_WAS_STORED) <= suite
    assert len(suite - set(READ_BACK_WHAT_WAS_STORED)) >= 10


async def test_nothing_filled_is_ever_read_back() -> None:
    """A fill answers True and is forgotten: every read after it misses, the lease goes to every caller."""
    backend = AsyncNullBackend()
    first = await backend.begin_fill("k", ["t"], token="a", lease_ttl=30)
    second = await backend.begin_fill("k", ["t"], token="b", lease_ttl=30)
    assert (FillStatus.ACQUIRED, FillStatus.ACQUIRED) == (first.status, second.status)
    assert await backend.fill("k", "v", ["t"], first.versions, ttl=60, token="a")
    assert MISSING is await backend.get("k", ["t"])
    assert {} == await backend.get_many(["k"])
    assert {"t": None} == await backend.tag_versions(["t"])


@pytest.mark.parametrize("url", ["none", "none://", " NONE "])
async def test_caching_off_through_the_cache_and_the_manager(url: str) -> None:
    """From the URL none, every get_or_load runs its loader, and invalidations and writes succeed."""
    cache = AsyncCache.from_url(url)
    manager = AsyncInvalidationManager(cache, service_rules())
    loads = 0

    async def load() -> int:
        nonlocal loads
        loads += 1
        return loads

    try:
        assert "none" == cache.backend.name
        assert [1, 2] == [await cache.get_or_load("user:1", load, tags=["user:1"]) for _ in "ab"]
        await cache.set("user:1", 7, tags=["user:1"])
        assert None is await cache.get("user:1")  # a miss: the default
        assert (await manager.invalidate_entity("user", new={"id": 1})).applied
        metrics = cache.metrics.snapshot()
        assert (0, 3, 2) == (metrics["hits"], metrics["misses"], metrics["loads"])
        await cache.backend.ping()
    finally:
        await manager.aclose()
        await cache.aclose()


@pytest.mark.parametrize("url", ["none://localhost", "none://?max_entries=3", "none:///db"])
def test_a_null_url_takes_nothing(url: str) -> None:
    """A none URL with a host, a path or an option is refused, naming the URL."""
    with pytest.raises(ConfigurationError, match="none"):
        AsyncCache.from_url(url)
