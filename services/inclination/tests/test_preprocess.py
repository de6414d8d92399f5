"""Preprocessing on known arrays: sky noise, asinh stretch, views, augmentation, resampling."""

from __future__ import annotations

import numpy as np
import pytest

from nightshift.inclination import preprocess
from nightshift.inclination.preprocess import ASINH_SOFTENING_SIGMA, TEST_TIME_VIEWS, augment, resample, sky_sigma, stretch, view


def noisy_tiles(n: int = 2, size: int = 64, sigma: float = 0.5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, sigma, (n, 3, size, size)).astype(np.float32)


def test_sky_sigma_measures_gaussian_noise_and_ignores_a_central_source() -> None:
    tiles = noisy_tiles(sigma=0.5)
    tiles[:, :, 24:40, 24:40] += 100.0
    np.testing.assert_allclose(sky_sigma(tiles), 0.5, rtol=0.1)


def test_sky_sigma_of_a_blank_tile_is_a_tiny_positive_floor() -> None:
    assert (sky_sigma(np.zeros((1, 3, 32, 32), np.float32)) > 0).all()


def test_stretch_maps_a_known_profile_through_asinh() -> None:
    tiles = noisy_tiles(n=1, sigma=1.0)
    tiles[0, :, 32, 32] = 1000.0  # above the 99.5th percentile of the centre: clipped to 1
    tiles[0, :, 30, 30] = -50.0   # negative: clipped to 0
    stretched = stretch(tiles)
    assert stretched.shape == (1, 64, 64, 3) and stretched.dtype == np.float32
    assert stretched[0, 32, 32].tolist() == [1.0, 1.0, 1.0] and stretched[0, 30, 30].tolist() == [0.0, 0.0, 0.0]
    sigma = sky_sigma(tiles)[0, 1]
    centre = np.arcsinh(tiles[0, 1, 16:48, 16:48] / (ASINH_SOFTENING_SIGMA * sigma))
    white = np.percentile(centre, 99.5)
    expected = np.clip(np.arcsinh(tiles[0, 1, 20, 21] / (ASINH_SOFTENING_SIGMA * sigma)) / white, 0, 1)
    assert stretched[0, 20, 21, 1] == pytest.approx(expected, rel=1e-5)


def test_missing_pixels_count_as_sky() -> None:
    tiles = noisy_tiles(n=1)
    tiles[0, :, :10] = np.nan
    stretched = stretch(tiles)
    assert np.isfinite(stretched).all() and (stretched[0, :10] == 0).all()


def test_stretch_of_no_tiles_is_empty_and_bad_shapes_are_refused() -> None:
    assert stretch(np.zeros((0, 3, 64, 64), np.float32)).shape == (0, 64, 64, 3)
    with pytest.raises(ValueError, match=r"expected \(n, 3 bands g/r/i, size, size\)"):
        stretch(np.zeros((1, 2, 64, 64), np.float32))


def test_views_select_bands_invert_and_orient() -> None:
    bands = np.zeros((1, 4, 4, 3), np.float32)
    bands[0, 0, 1] = [0.1, 0.2, 0.3]  # g, r, i at row 0, column 1
    colour = view(bands, "colour")
    assert colour[0, 0, 1].tolist() == pytest.approx([0.3, 0.2, 0.1])  # i, r, g as red, green, blue
    assert view(bands, "gray-r")[0, 0, 1].tolist() == pytest.approx([0.2] * 3)
    assert view(bands, "inverted-g")[0, 0, 1].tolist() == pytest.approx([0.9] * 3)
    assert view(bands, "gray-i", "flip-lr")[0, 0, 2, 0] == pytest.approx(0.3)
    assert view(bands, "gray-i", "flip-ud")[0, 3, 1, 0] == pytest.approx(0.3)
    assert view(bands, "gray-i", "rotate-180")[0, 3, 2, 0] == pytest.approx(0.3)
    with pytest.raises(ValueError, match="appearance 'sepia'"):
        view(bands, "sepia")


def test_test_time_copies_are_the_listed_views() -> None:
    stretched = stretch(noisy_tiles(n=3))
    copies = preprocess.test_time_copies(stretched, 5)
    assert copies.shape == (5, 3, 64, 64, 3)
    for k in range(5):
        np.testing.assert_array_equal(copies[k], view(stretched, *TEST_TIME_VIEWS[k]))
    with pytest.raises(ValueError, match="copies = 17"):
        preprocess.test_time_copies(stretched, 17)


@pytest.mark.parametrize("rotation", ["right_angle", "any"])
def test_augmentation_is_reproducible_in_range_and_keeps_an_ellipse_aspect_ratio(rotation: str) -> None:
    size = 64
    y, x = np.indices((size, size)) - (size - 1) / 2
    ellipse = np.exp(-((x / 10) ** 2 + (y / 4) ** 2))
    stretched = np.repeat(ellipse[None, ..., None], 3, axis=-1).astype(np.float32).repeat(16, axis=0)
    first = augment(stretched, np.random.default_rng(1), rotation=rotation)
    np.testing.assert_array_equal(first, augment(stretched, np.random.default_rng(1), rotation=rotation))
    assert first.shape == stretched.shape and first.min() >= 0 and first.max() <= 1
    major_axis_angles = []
    for image in first:
        light = image[..., 0]
        if np.concatenate([light[0], light[-1]]).mean() > 0.5:  # an inverted (black on white) copy
            light = 1 - light
        rows, cols = np.nonzero(light > 0.5 * light.max())  # the half-maximum isophote
        moments, axes = np.linalg.eigh(np.cov(np.stack([cols, rows])))  # its second moments, in any orientation
        assert np.sqrt(moments[0] / moments[1]) == pytest.approx(0.4, abs=0.06)  # zoom, shifts and turns keep the axis ratio
        major_axis_angles.append(np.degrees(np.arctan2(axes[1, 1], axes[0, 1])) % 180)
    tilts = np.minimum(np.array(major_axis_angles), 180 - np.array(major_axis_angles))  # from horizontal, 0..90 deg
    if rotation == "right_angle":
        assert tilts.max() < 2  # the major axis stays horizontal
    else:
        assert tilts.max() > 30 and np.ptp(tilts) > 30  # turned by any angle


def test_augmentation_refuses_an_unknown_rotation() -> None:
    with pytest.raises(ValueError, match="rotation 'random'"):
        augment(np.zeros((1, 64, 64, 3), np.float32), np.random.default_rng(0), rotation="random")


def test_resample_conserves_flux_and_missing_pixels() -> None:
    tiles = np.ones((1, 3, 128, 128), np.float32)
    tiles[0, :, :16] = np.nan
    small = resample(tiles, 64)
    assert small.shape == (1, 3, 64, 64)
    assert np.nansum(small) == pytest.approx(np.nansum(tiles), rel=0.02)
    assert np.isnan(small[0, :, :8]).all() and np.isfinite(small[0, :, 9:]).all()
