"""Preprocessing on known arrays."""

from __future__ import annotations

import numpy as np
import pytest

from nightshift.filaments.preprocess import (augment, blend_weights, cut_patches, normalise_patches, patch_starts,
                                             sample_patch_corners)


def test_minmax_normalisation_per_patch() -> None:
    patches = np.array([[[1.0, 3.0], [5.0, np.nan]], [[2.0, 2.0], [2.0, 2.0]]])
    scaled, valid = normalise_patches(patches, "minmax")
    np.testing.assert_allclose(scaled[0], [[0.0, 0.5], [1.0, 0.0]])
    np.testing.assert_array_equal(valid[0], [[True, True], [True, False]])
    np.testing.assert_array_equal(scaled[1], 0)  # a constant patch has no contrast


def test_log_normalisation_uses_log10() -> None:
    scaled, valid = normalise_patches(np.array([[1e21, 1e22], [1e23, -1.0]]), "log-minmax")
    np.testing.assert_allclose(scaled, [[0.0, 0.5], [1.0, 0.0]])
    assert not valid[1, 1]


def test_unknown_scaling_and_empty_input() -> None:
    with pytest.raises(ValueError, match="scaling='sqrt'"):
        normalise_patches(np.ones((2, 2)), "sqrt")
    assert normalise_patches(np.zeros((0, 4, 4)))[0].shape == (0, 4, 4)


def test_patch_corners_hold_a_share_of_one_filament_and_respect_missing_data() -> None:
    mask = np.zeros((200, 200), bool)
    mask[20, 10:110] = True  # filament 1: 100 pixels, a 64-pixel patch holds at most 64%
    mask[150:160, 150:160] = True  # filament 2: 100 pixels, fits in a patch whole
    usable = np.ones_like(mask)
    usable[:, 190:] = False
    corners = sample_patch_corners(mask, usable, np.random.default_rng(0), count=40, patch_px=64,
                                   min_mask_fraction=0.5, background_fraction=0.0, max_missing_fraction=0.0)
    assert len(corners) == 40
    held = []
    for row, col in corners:
        window = np.zeros_like(mask)
        window[row : row + 64, col : col + 64] = True
        assert usable[window].all()
        held.append(max((mask[20, 10:110] & window[20, 10:110]).mean(), (mask & window)[150:160, 150:160].mean()))
    assert min(held) >= 0.5
    both = {int(c[0] > 60) for c in corners}
    assert both == {0, 1}  # patches around each filament
    none = sample_patch_corners(mask, usable, np.random.default_rng(0), count=5, patch_px=64,
                                min_mask_fraction=0.9, background_fraction=0.0, max_missing_fraction=0.0)
    assert len(none) <= 5 and all(r > 60 for r, _ in none)  # only filament 2 can be held at 90%
    sky = sample_patch_corners(np.zeros((80, 80), bool), np.ones((80, 80), bool), np.random.default_rng(0), count=3,
                               patch_px=64, min_mask_fraction=0.2, background_fraction=0.0, max_missing_fraction=0.0)
    assert len(sky) == 3  # no filament: background patches only


def test_cut_patches() -> None:
    image = np.arange(36).reshape(6, 6)
    patches = cut_patches(image, np.array([[1, 2]]), 3)
    np.testing.assert_array_equal(patches[0], image[1:4, 2:5])
    assert cut_patches(image, np.zeros((0, 2), int), 3).shape == (0, 3, 3)


def test_augment_moves_inputs_targets_and_weights_together() -> None:
    inputs = np.random.default_rng(0).random((16, 8, 8)).astype(np.float32)
    targets = (inputs > 0.5).astype(np.float32)
    weights = np.ones_like(inputs)
    weights[:, 0, 0] = 0
    out_inputs, out_targets, out_weights = augment(inputs, targets, weights, np.random.default_rng(1), noise_sigma=0.0)
    np.testing.assert_array_equal(out_targets, (out_inputs > 0.5) * (out_weights > 0) + (out_targets * (out_weights == 0)))
    assert (out_inputs[out_weights == 0] == 0).all()
    assert sorted(out_inputs[out_weights > 0].ravel()) == sorted(inputs[weights > 0].ravel())
    assert not np.array_equal(out_inputs, inputs)  # some patch was flipped or rotated


def test_patch_starts_cover_the_axis() -> None:
    assert patch_starts(64, 64, 32) == [0]
    assert patch_starts(100, 64, 32) == [0, 32, 36]
    with pytest.raises(ValueError, match="shorter than the patch"):
        patch_starts(10, 64, 32)


def test_blend_weights_peak_in_the_centre_and_never_vanish() -> None:
    weights = blend_weights(64)
    assert weights.min() > 0
    assert weights[32, 32] == weights.max() or weights[31, 31] == weights.max()
    np.testing.assert_allclose(weights, weights.T)
