"""The history check of ``freshcache verify`` (and of the linearizability tests): each rule
flagged on a history built by hand, clean histories passed, unknown writes allowed to land late."""

from __future__ import annotations

from freshcache.verification import Read, Write, check_history

NONE = {"stale": 0, "future": 0, "non-monotonic": 0}
WRITES = [Write("k", 10, 20, 1), Write("k", 30, 40, 2)]


def reads(*spans: tuple[int, int, int]) -> list[Read]:
    return [Read("k", start, end, value, "route") for start, end, value in spans]


def test_a_clean_history_passes() -> None:
    """Reads of the initial value, of writes in flight and of writes answered break no rule."""
    clean = reads((0, 5, 0), (15, 25, 1), (21, 29, 1), (35, 45, 2), (41, 50, 2), (12, 18, 0))
    assert NONE == check_history(WRITES, clean).counts


def test_each_kind_of_violation_is_flagged() -> None:
    """A stale read, a read from the future and a read going back are each counted under their kind."""
    assert {**NONE, "stale": 1} == check_history(WRITES, reads((41, 50, 1))).counts
    assert {**NONE, "future": 1} == check_history(WRITES, reads((0, 9, 1))).counts
    assert {**NONE, "non-monotonic": 1} == check_history(
        WRITES, reads((31, 33, 2), (34, 38, 1))
    ).counts


def test_a_value_no_write_wrote_is_from_the_future() -> None:
    """A value never written (or unparsable, -1) is flagged as future, with an example naming the key."""
    verdict = check_history(WRITES, reads((45, 50, 7), (45, 50, -1)))
    assert 2 == verdict.counts["future"]
    assert verdict.examples["future"][0].startswith("k: route read 7")


def test_a_write_of_unknown_outcome_may_land_after_its_successors() -> None:
    """A timed-out write's value read after later writes answered is neither stale nor a step back."""
    writes = [Write("k", 10, None, 1), Write("k", 30, 40, 2)]
    late = reads((45, 50, 2), (55, 60, 1), (65, 70, 1))
    assert NONE == check_history(writes, late).counts


def test_a_write_of_unknown_outcome_still_orders_the_values_before_it() -> None:
    """After a read of an unknown write's value, a read of an older answered value is a step back."""
    writes = [Write("k", 10, 20, 1), Write("k", 30, None, 2)]
    assert {**NONE, "non-monotonic": 1} == check_history(
        writes, reads((35, 40, 2), (45, 50, 1))
    ).counts
    assert {**NONE, "future": 1} == check_history(writes, reads((21, 25, 2))).counts


def test_keys_are_checked_apart() -> None:
    """A value that is stale for one key says nothing of another key's reads."""
    writes = [*WRITES, Write("j", 10, 20, 5)]
    verdict = check_history(writes, [Read("j", 30, 35, 5), Read("k", 30, 35, 1)])
    assert NONE == verdict.counts
    assert 2 == verdict.reads


def test_every_violation_keeps_its_read_and_when_it_ran() -> None:
    """Past the few examples, each violating read is kept with its kind, start and end (for verify's timeline)."""
    many = reads(*[(41 + n, 50 + n, 1) for n in range(8)], (0, 9, 1))
    verdict = check_history(WRITES, many)

    assert 9 == len(verdict.found)  # every one, where the examples stop at five a kind
    assert 5 == len(verdict.examples["stale"])
    assert ("future", 0, 9) == verdict.found[-1][:3]
    assert [(41 + n, 50 + n) for n in range(8)] == [(s, e) for _, s, e, _ in verdict.found[:8]]
