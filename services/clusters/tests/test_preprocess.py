"""Preprocessing on known arrays: missing pixels, robust scales, arcsinh, augmentation."""

from __future__ import annotations

import numpy as np
import pytest

from nightshift.clusters.preprocess import arcsinh_scale, augment, channels_last, fill_missing, robust_scales, subtract_tile_medians


def test_missing_pixels_become_the_tile_band_median() -> None:
    pixels = np.array([[[[1.0, 2.0], [np.nan, 4.0]], [[np.nan, np.nan], [np.nan, np.nan]]]], dtype=np.float32)
    filled, valid = fill_missing(pixels)
    assert filled[0, 0, 1, 0] == 2.0 and np.all(filled[0, 1] == 0.0)
    assert valid.tolist() == [[[False, False], [False, False]]]
    clean, all_valid = fill_missing(np.ones((2, 3, 4, 4)))
    assert all_valid.all() and clean.dtype == np.float32
    with pytest.raises(ValueError, match="expected \\(n, bands, height, width\\)"):
        fill_missing(np.ones((3, 4, 4)))


def test_robust_scales_are_mad_std_per_band() -> None:
    band0 = np.array([1.0, 2.0, 3.0, 4.0, 100.0])  # median 3, MAD 1 -> 1.4826
    pixels = np.stack([band0, 10 * band0])[None, :, None, :]
    np.testing.assert_allclose(robust_scales(pixels), [1.482602, 14.82602], rtol=1e-5)
    constant = np.ones((1, 1, 2, 2))
    assert robust_scales(constant)[0] > 0


def test_tile_medians_are_subtracted_per_tile_and_band_ignoring_nan() -> None:
    pixels = np.array([[[[1.0, 2.0], [np.nan, 9.0]], [[5.0, 5.0], [5.0, 7.0]]]], dtype=np.float32)
    out = subtract_tile_medians(pixels)
    np.testing.assert_allclose(out[0, 0], [[-1.0, 0.0], [np.nan, 7.0]])
    np.testing.assert_allclose(out[0, 1], [[0.0, 0.0], [0.0, 2.0]])


def test_arcsinh_scale_and_layout() -> None:
    pixels = np.array([[[[0.0, 2.0]], [[-30.0, 3.0]]]])
    scaled = arcsinh_scale(pixels, np.array([2.0, 3.0]))
    np.testing.assert_allclose(scaled[0, :, 0], [[0.0, np.arcsinh(1.0)], [np.arcsinh(-10.0), np.arcsinh(1.0)]])
    assert channels_last(pixels).shape == (1, 1, 2, 2)


def test_augment_moves_image_and_mask_together() -> None:
    rng = np.random.default_rng(0)
    images = rng.normal(size=(16, 8, 8, 2)).astype(np.float32)
    masks = images[..., :1] > 1.0
    out_images, out_masks = augment(images, masks, rng)
    np.testing.assert_array_equal(out_images[..., :1] > 1.0, out_masks)
    assert not np.array_equal(out_images, images)
    assert sorted(out_images.ravel().tolist()) == sorted(images.ravel().tolist())
