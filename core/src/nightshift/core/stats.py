"""Confidence intervals for the figures the evaluations report: one bootstrap rule for every service.

A headline figure is reported with the interval a reader needs to judge it (how much would the figure move
on another draw of the same number of test objects?): the percentile bootstrap over the independent units
of the test set (galaxies, maps, fields, images), resampled jointly when a statistic needs several arrays
(predictions and truth), with a fixed seed so a re-run reports the same interval.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["CONFIDENCE", "RESAMPLES", "bootstrap_interval"]

CONFIDENCE = 0.95
RESAMPLES = 2000


def bootstrap_interval(statistic: Callable[..., float], *samples: Sequence[float] | np.ndarray, confidence: float = CONFIDENCE,
                       resamples: int = RESAMPLES, seed: int = 0) -> list[float]:
    """[low, high]: the percentile bootstrap interval of ``statistic(*samples)``.

    ``samples`` are arrays over the same units (their first axis), resampled together (paired). NaN
    bounds when there are fewer than two units or the statistic is undefined on most resamples.

    >>> low, high = bootstrap_interval(np.mean, np.arange(100.0))
    >>> 43 < low < 49.5 < high < 56
    True
    """
    from scipy import stats

    arrays = [np.asarray(sample) for sample in samples]
    if len(arrays[0]) < 2:
        return [float("nan"), float("nan")]
    result = stats.bootstrap(arrays, statistic, paired=True, vectorized=False, confidence_level=confidence, n_resamples=resamples,
                             method="percentile", rng=np.random.default_rng(seed))
    return [float(result.confidence_interval.low), float(result.confidence_interval.high)]
