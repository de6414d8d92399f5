"""The bootstrap interval every evaluation reports."""

import numpy as np
import pytest

from nightshift.core.stats import bootstrap_interval


def test_the_interval_of_a_mean_is_the_textbook_one_and_repeats_for_a_seed() -> None:
    values = np.random.default_rng(3).normal(10.0, 2.0, 400)
    low, high = bootstrap_interval(np.mean, values)
    half_width = 1.96 * values.std(ddof=1) / np.sqrt(values.size)  # the normal-theory 95% interval
    assert (low + high) / 2 == pytest.approx(values.mean(), abs=0.05)
    assert high - low == pytest.approx(2 * half_width, rel=0.15)
    assert bootstrap_interval(np.mean, values) == [low, high]


def test_paired_samples_are_resampled_together() -> None:
    truth = np.random.default_rng(4).uniform(0, 90, 300)
    predicted = truth + 1.0  # every error exactly 1: resampling pairs keeps it so; resampling apart would not
    low, high = bootstrap_interval(lambda p, t: float(np.sqrt(np.mean((p - t) ** 2))), predicted, truth)
    assert low == pytest.approx(1.0) and high == pytest.approx(1.0)


def test_fewer_than_two_units_give_no_interval() -> None:
    assert np.isnan(bootstrap_interval(np.mean, [1.0])).all()
