"""The circuit breaker's cooldown: opened by a failure, grown only by failed probes."""

from __future__ import annotations

import time

from freshcache._breaker import CircuitBreaker


def end_cooldown(breaker: CircuitBreaker) -> None:
    """Move the breaker to the end of its cooldown, where the next call is a probe."""
    breaker.open_until = time.monotonic() - 0.001


def test_failures_of_calls_already_in_flight_do_not_grow_the_cooldown() -> None:
    """Twelve calls failing together (sent before the breaker opened) open it once, at its first cooldown."""
    breaker = CircuitBreaker(0.5, max_cooldown=30.0)

    for _ in range(12):
        breaker.failed()

    assert 0.5 == breaker.cooldown
    assert breaker.is_open
    assert breaker.open_until - time.monotonic() <= 0.5


def test_each_failed_probe_doubles_the_cooldown_once() -> None:
    """A probe that fails doubles the cooldown; other failures meanwhile add nothing; the doubling stops at max_cooldown."""
    breaker = CircuitBreaker(0.5, max_cooldown=3.0)
    breaker.failed()
    cooldowns = []
    for _ in range(4):
        end_cooldown(breaker)
        assert breaker.allow()  # the probe
        assert not breaker.allow()  # everyone else waits for it
        breaker.failed()
        breaker.failed()  # a call sent before the probe, failing late
        cooldowns.append(breaker.cooldown)

    assert [1.0, 2.0, 3.0, 3.0] == cooldowns
    assert breaker.open_until - time.monotonic() <= 3.0


def test_a_success_closes_the_breaker_and_resets_the_cooldown() -> None:
    """After a successful call the breaker is closed and the next failure opens it at the first cooldown again."""
    breaker = CircuitBreaker(0.5)
    breaker.failed()
    end_cooldown(breaker)
    assert breaker.allow()
    breaker.failed()
    assert 1.0 == breaker.cooldown

    breaker.succeeded()
    assert (0.0, 0.5) == (breaker.open_until, breaker.cooldown)
    assert breaker.allow()
    breaker.failed()
    assert 0.5 == breaker.cooldown
