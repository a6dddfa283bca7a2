"""Guards that a benchmark measures what it says: every timed read is a hit, with the payload."""

from __future__ import annotations

from freshcache import CacheMetrics


def expect_hit(found: object, expected: object, who: str) -> None:
    if found != expected:
        raise RuntimeError(f"{who}: expected a hit with the payload, got {found!r:.80}")


def expect_only_hits(metrics: CacheMetrics, who: str) -> None:
    """After one fill (a miss and a load), everything else must have been hits."""
    if metrics.loads != 1 or metrics.misses != 1:
        raise RuntimeError(f"{who} missed during the hit benchmark: {metrics.snapshot()}")
