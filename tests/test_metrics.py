"""Counters and histograms."""

from __future__ import annotations

import math

from freshcache import CacheMetrics, Histogram


def test_histogram_counts_into_buckets_and_estimates_quantiles() -> None:
    """Observations land in the first bucket whose bound holds them; quantiles are bucket bounds."""
    histogram = Histogram(buckets=(0.001, 0.01, 0.1))
    for seconds in (0.0005, 0.0005, 0.005, 0.05, 5.0):
        histogram.observe(seconds)

    assert [2, 1, 1, 1] == histogram.bucket_counts
    assert 5 == histogram.count
    assert math.isclose(5.056, histogram.sum)
    assert 0.01 == histogram.quantile(0.5)
    assert math.inf == histogram.quantile(0.99)
    assert [(0.001, 2), (0.01, 3), (0.1, 4), (math.inf, 5)] == histogram.cumulative()


def test_empty_histogram_has_no_quantile() -> None:
    """An empty histogram answers None rather than inventing a latency."""
    assert None is Histogram().quantile(0.5)


def test_snapshot_and_reset() -> None:
    """A snapshot holds every counter and the hit rate; reset zeroes counts, keeps configuration."""
    metrics = CacheMetrics(get_sample_every=4)
    metrics.hits += 3
    metrics.misses += 1
    metrics.load_latency.observe(0.002)

    snapshot = metrics.snapshot()
    assert set(CacheMetrics.COUNTERS) | {"hit_rate", *CacheMetrics.HISTOGRAMS} == set(snapshot)
    assert 0.75 == snapshot["hit_rate"]
    assert 1 == snapshot["load_latency"]["count"]

    metrics.reset()
    assert 0 == metrics.hits
    assert 0.0 == metrics.hit_rate
    assert 0 == metrics.load_latency.count
    assert 4 == metrics.get_sample_every
