"""Durations: seconds given as a number or a ``timedelta``, checked where they come in."""

from __future__ import annotations

from datetime import timedelta
from typing import TypeAlias

from freshcache._exceptions import ConfigurationError

Seconds: TypeAlias = float | timedelta

# A year: far above any sensible TTL, far below what Redis's PX or the monotonic clock
# could overflow on; a larger value is a unit mistake (milliseconds, or a timestamp).
MAX_SECONDS = 365 * 86_400


def seconds(name: str, value: object, *, zero_allowed: bool = False) -> float:
    """``value`` as seconds: a positive (or zero, when allowed) finite number up to a year."""
    wanted = "zero or more seconds" if zero_allowed else "a positive number of seconds"
    if isinstance(value, timedelta):
        amount: float = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        amount = value
    else:
        raise ConfigurationError(
            f"{name} must be {wanted} (a number or a timedelta), not {type(value).__name__}: {value!r}"
        )
    low_ok = amount >= 0 if zero_allowed else amount > 0
    if not (low_ok and amount <= MAX_SECONDS):  # NaN fails both comparisons
        raise ConfigurationError(
            f"{name} must be {wanted}, at most {MAX_SECONDS} (a year), not {value!r}"
        )
    return float(amount)
