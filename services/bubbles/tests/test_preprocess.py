"""The per-channel normalisation and the star finder on known arrays."""

import numpy as np
import pytest

from nightshift.bubbles.preprocess import normalise_channel, preprocess_batch, preprocess_crop, star_mask


def test_normalise_subtracts_minimum_clips_at_mean_plus_3_sigma_and_divides() -> None:
    image = np.array([[10.0, 11.0], [12.0, 100.0]])
    shifted = image - 10.0
    level = shifted.mean() + 3 * shifted.std()
    expected = np.clip(shifted, 0, level) / level
    assert np.allclose(normalise_channel(image), expected)
    assert normalise_channel(image).max() <= 1.0


def test_normalise_ignores_excluded_pixels_in_the_statistics_and_sets_nan_to_zero() -> None:
    image = np.array([[0.0, 1.0, 2.0, 1000.0, np.nan]])
    exclude = np.array([[False, False, False, True, False]])
    level = np.array([0.0, 1.0, 2.0]).mean() + 3 * np.array([0.0, 1.0, 2.0]).std()
    assert np.allclose(normalise_channel(image, exclude=exclude), [[0.0, 1 / level, 2 / level, 1.0, 0.0]])
    assert np.array_equal(normalise_channel(np.full((2, 2), np.nan)), np.zeros((2, 2)))


def test_star_mask_finds_point_sources_not_extended_emission() -> None:
    yy, xx = np.mgrid[:100, :100]
    rng = np.random.default_rng(1)
    image = 5.0 * np.exp(-((xx - 70) ** 2 + (yy - 30) ** 2) / (2 * 20.0**2)) + rng.normal(0, 0.02, (100, 100))
    image += 2.0 * np.exp(-((xx - 20) ** 2 + (yy - 60) ** 2) / (2 * 0.85**2))
    mask = star_mask(image, fwhm_px=2.0)
    assert mask[60, 20] and not mask[30, 70]
    assert mask.sum() < 60


def test_preprocess_crop_gives_two_normalised_300_pixel_channels() -> None:
    crop = np.random.default_rng(0).uniform(5, 50, (2, 150, 150)).astype(np.float32)
    out = preprocess_crop(crop)
    assert out.shape == (2, 300, 300) and out.dtype == np.float32
    assert out.min() == 0.0 and 0.5 < out.max() <= 1.0
    assert preprocess_batch([]).shape == (0, 2, 300, 300)
    with pytest.raises(ValueError, match="expected \\(2, height, width\\)"):
        preprocess_crop(np.zeros((3, 10, 10), np.float32))
    with pytest.raises(ValueError, match="one per crop"):
        preprocess_batch([crop], fwhm8_px=[1.0, 2.0])
