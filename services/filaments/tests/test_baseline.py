"""The classical baseline: ridges score high, flat sky and missing pixels score zero."""

from __future__ import annotations

import numpy as np

from nightshift.filaments.baseline import ridge_score


def test_a_ridge_scores_higher_than_the_sky_around_it() -> None:
    rows, cols = np.indices((64, 64))
    image = 1e22 * (1 + np.exp(-0.5 * ((cols - 32) / 1.5) ** 2))
    score = ridge_score(image)
    assert score[:, 32].mean() > 0.8
    assert score[:, :20].max() < 0.05
    assert score.min() >= 0 and score.max() <= 1


def test_missing_pixels_and_empty_maps() -> None:
    image = np.full((32, 32), 1e22)
    image[5:8, 5:8] = np.nan
    score = ridge_score(image)
    assert (score[5:8, 5:8] == 0).all()
    assert ridge_score(np.full((8, 8), np.nan)).max() == 0
    assert ridge_score(np.zeros((0, 0))).shape == (0, 0)
