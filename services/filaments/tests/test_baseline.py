"""The classical baselines: ridges score high, flat sky and missing pixels score zero; FilFinder finds
an injected filament."""

from __future__ import annotations

import numpy as np

from nightshift.filaments.baseline import FilFinderParameters, filfinder_score, ridge_score
from nightshift.filaments.config import HIGAL_BEAM_FWHM_PX
from nightshift.filaments.evaluate import dice
from nightshift.filaments.simulate import SimulatedMap, simulate_map


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


def _one_bright_filament() -> SimulatedMap:
    """A simulated map with one filament (about 3% of the pixels) on a quiet background."""
    return simulate_map(96, np.random.default_rng(0), filaments_per_100px2=(1.0, 1.0), contrast=(1.5, 2.4),
                        length_px=(80.0, 120.0), sigma_ln=(0.15, 0.15), clumps_per_100px2=0.0, missing_patches=(0, 0))


def test_filfinder_finds_the_injected_filament() -> None:
    sky = _one_bright_filament()
    assert len(sky.spines) == 1 and 0.02 < sky.mask.mean() < 0.05
    score = filfinder_score(sky.column_density, FilFinderParameters(), beam_fwhm_px=HIGAL_BEAM_FWHM_PX)
    found = score >= 0.5
    assert found[sky.mask].mean() > 0.8  # most of the filament
    assert found[~sky.mask].mean() < 0.15  # little of the sky
    # Inside the mask the score is FilFinder's flattened intensity, rescaled to (0.5, 1).
    assert score.min() >= 0 and score.max() < 1 and set(np.unique(score[~found])) == {0}
    assert dice(found, sky.mask) > 0.35 > 4 * dice(np.roll(found, 20, axis=1), sky.mask)


def test_filfinder_scores_missing_pixels_and_empty_maps_zero() -> None:
    sky = _one_bright_filament()
    image = sky.column_density.copy()
    image[40:50, 40:50] = np.nan
    score = filfinder_score(image, FilFinderParameters(), beam_fwhm_px=HIGAL_BEAM_FWHM_PX)
    assert (score[40:50, 40:50] == 0).all() and (score >= 0.5).any()
    assert filfinder_score(np.full((8, 8), np.nan), FilFinderParameters(), beam_fwhm_px=3.0).max() == 0
    assert filfinder_score(np.zeros((0, 0)), FilFinderParameters(), beam_fwhm_px=3.0).shape == (0, 0)
