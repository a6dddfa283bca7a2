"""What the consistency monitor counts, and what its counts allow it to claim, in nines.

A check asks one question of one sampled tag invalidation: once the invalidation was
applied and a delay has passed, is the tag's version still different from the one it had
before? Every entry stored before the invalidation carries that old version, and a read
hits only when every version it carries is current, so a tag back at its old version (a
lost invalidation, a failover to a replica that missed it, a version or an entry
written behind the library's back) means every entry from before is served again.

The figure is never more than the sample supports: with ``n`` checks and ``k``
inconsistencies, ``consistency_nines`` is ``-log10`` of the 95% upper confidence bound
on the inconsistency rate, exact for ``k = 0`` (``1 - 0.05 ** (1 / n)``, about ``3 / n``)
and Wilson's score bound otherwise. 100,000 clean checks allow 4.52 nines, not five;
five need 299,572.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from freshcache._exceptions import ConfigurationError

CONFIDENCE = 0.95
_Z = 1.6448536269514722  # one-sided 95% quantile of the standard normal


def upper_bound(checked: int, inconsistent: int) -> float:
    """The 95% upper confidence bound on the inconsistency rate; 1.0 before any check."""
    if checked <= 0:
        return 1.0
    if inconsistent == 0:
        return 1.0 - math.pow(1.0 - CONFIDENCE, 1.0 / checked)
    rate = inconsistent / checked
    spread = _Z * math.sqrt(rate * (1 - rate) / checked + _Z**2 / (4 * checked**2))
    wilson = (rate + _Z**2 / (2 * checked) + spread) / (1 + _Z**2 / checked)
    return min(1.0, max(rate, wilson))  # rounding must not put it below what was seen


def nines(rate: float) -> float:
    """``-log10(rate)``: 0.001 is three nines; 0 for a rate of 1 (or more)."""
    return 0.0 if rate >= 1.0 else -math.log10(rate)


def sampling_period(rate: float) -> int:
    """One invalidation in this many is sampled; ConfigurationError for a rate outside (0, 1]."""
    if rate.__class__ not in (int, float) or not 0 < rate <= 1:
        raise ConfigurationError(f"rate must be a number in (0, 1], not {rate!r}")
    return max(1, round(1 / rate))


@dataclass(frozen=True)
class Inconsistency:
    """A tag found back at the version it had before an invalidation: entries from before hit."""

    tag: str
    version: str
    invalidated_at: float  # Unix time the invalidation returned
    checked_at: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "tag": self.tag,
            "version": self.version,
            "invalidated_at": datetime.fromtimestamp(self.invalidated_at, timezone.utc).isoformat(),
            "seconds_after": round(self.checked_at - self.invalidated_at, 3),
        }


class MonitorMetrics:
    """The monitor's counts; ``reset`` zeroes them. Keys are the table's (``METRICS["monitor"]``)."""

    COUNTERS = ("sampled", "checked", "inconsistent", "skipped", "dropped", "errors")

    __slots__ = (*COUNTERS, "examples", "queued")

    sampled: int
    checked: int
    inconsistent: int
    skipped: int
    dropped: int
    errors: int

    def __init__(self, max_examples: int = 20) -> None:
        self.queued = 0  # set by the monitor: samples waiting for their check
        self.examples: deque[Inconsistency] = deque(maxlen=max_examples)
        self.reset()

    def reset(self) -> None:
        for name in self.COUNTERS:
            setattr(self, name, 0)
        self.examples.clear()

    def snapshot(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: getattr(self, name) for name in self.COUNTERS}
        out["queued"] = self.queued
        out.update(figures(self.checked, self.inconsistent))
        return out

    def report(self) -> dict[str, Any]:
        """The snapshot, what it means in words, and the latest inconsistencies found."""
        out = self.snapshot()
        out["confidence"] = CONFIDENCE
        out["statement"] = statement(self.checked, self.inconsistent)
        out["examples"] = [example.as_dict() for example in reversed(self.examples)]
        return out


def figures(checked: int, inconsistent: int) -> dict[str, float]:
    """The ratio, the bound and the nines of these counts (also for counts summed over processes)."""
    bound = upper_bound(checked, inconsistent)
    return {
        "consistency_ratio": 1.0 - inconsistent / checked if checked else 1.0,
        "inconsistency_upper_bound": bound,
        "consistency_nines": nines(bound),
    }


def statement(checked: int, inconsistent: int) -> str:
    """The claim the counts allow, in one sentence, and no more."""
    if not checked:
        return "no invalidation checked yet"
    bound = upper_bound(checked, inconsistent)
    found = (
        "no inconsistency"
        if not inconsistent
        else f"{inconsistent} inconsistencies (rate {inconsistent / checked:.3g})"
    )
    return (
        f"{found} in {checked:,} checks: inconsistency rate below {bound:.3g} "
        f"at {CONFIDENCE:.0%} confidence, {nines(bound):.2f} nines"
    )
