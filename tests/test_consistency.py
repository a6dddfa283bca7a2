"""What the consistency monitor's counts allow it to claim: the bound, the nines, the words."""

from __future__ import annotations

import math

import pytest

from freshcache import ConfigurationError
from freshcache._consistency import figures, nines, sampling_period, statement, upper_bound


def test_zero_inconsistencies_bound_the_rate_by_about_three_over_n() -> None:
    """With no inconsistency in n checks the 95% bound is 1 - 0.05^(1/n), close to 3/n."""
    assert math.isclose(1 - 0.05 ** (1 / 100_000), upper_bound(100_000, 0))
    assert math.isclose(3 / 100_000, upper_bound(100_000, 0), rel_tol=0.01)
    assert 1.0 == upper_bound(0, 0)  # no check: nothing is known


def test_one_hundred_thousand_clean_checks_are_not_five_nines() -> None:
    """100,000 clean checks allow 4.52 nines; five nines need 299,572 of them, and 299,571 fall short."""
    assert 4.52 == round(nines(upper_bound(100_000, 0)), 2)
    assert nines(upper_bound(299_572, 0)) >= 5.0
    assert nines(upper_bound(299_571, 0)) < 5.0


def test_with_inconsistencies_the_bound_lies_above_the_observed_rate() -> None:
    """Wilson's upper bound exceeds the observed rate, shrinks toward it with more checks, and stays at most 1."""
    for checked, inconsistent in ((10, 1), (1_000, 1), (1_000_000, 10), (5, 5)):
        bound = upper_bound(checked, inconsistent)
        assert inconsistent / checked <= bound <= 1.0
    assert upper_bound(1_000_000, 100) < upper_bound(10_000, 1)
    assert 1.0 == upper_bound(5, 5)


def test_figures_and_statement_say_what_the_counts_allow() -> None:
    """The ratio is the observed one; the nines are the bound's; the sentence says both, and nothing before a check."""
    assert {
        "consistency_ratio": 1.0,
        "inconsistency_upper_bound": 1.0,
        "consistency_nines": 0.0,
    } == (figures(0, 0))
    assert 0.75 == figures(4, 1)["consistency_ratio"]
    assert "no invalidation checked yet" == statement(0, 0)
    assert (
        "no inconsistency in 100,000 checks: inconsistency rate below 3e-05 at 95% confidence, 4.52 nines"
        == statement(100_000, 0)
    )


@pytest.mark.parametrize(
    ("rate", "period"), [(1.0, 1), (1, 1), (0.5, 2), (0.01, 100), (0.003, 333)]
)
def test_a_rate_is_one_invalidation_in_a_period(rate: float, period: int) -> None:
    """A rate becomes a whole period: one invalidation sampled in round(1 / rate)."""
    assert period == sampling_period(rate)


@pytest.mark.parametrize("rate", [0, -0.1, 1.01, math.nan, True, "0.1", None])
def test_a_rate_outside_zero_to_one_is_refused(rate: object) -> None:
    """Zero, negatives, more than one, NaN and non-numbers are refused, naming the rate."""
    with pytest.raises(ConfigurationError, match="rate must be a number in"):
        sampling_period(rate)  # type: ignore[arg-type]
