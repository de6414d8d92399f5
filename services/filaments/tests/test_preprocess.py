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


def test_highpass_scaling_maps_a_brighter_sky_to_the_same_inputs() -> None:
    rng = np.random.default_rng(0)
    sky = rng.lognormal(np.log(1e22), 0.3, (2, 64, 64))
    sky[:, 30:33, :] *= 2  # a filament
    sky[0, 5, 5] = np.nan
    scaled, valid = normalise_patches(sky, "log-highpass")
    brighter, _ = normalise_patches(7.5 * sky, "log-highpass")
    np.testing.assert_allclose(brighter, scaled, atol=1e-6)  # any factor: the same inputs
    assert scaled.min() == 0 and scaled.max() == 1 and scaled[0, 5, 5] == 0 and not valid[0, 5, 5]
    rows, cols = np.mgrid[:64, :64]
    gradient = np.exp(1.5 * (rows + cols) / 128)  # a sky 4.5 times brighter at one corner than at the other
    local, _ = normalise_patches(sky * gradient, "log-highpass")
    global_, _ = normalise_patches(sky * gradient, "log-minmax")
    plain, _ = normalise_patches(sky, "log-minmax")
    inner = (slice(None), slice(8, -8), slice(8, -8))
    assert np.abs(local - scaled)[inner].mean() < 0.01  # the slow brightening removed
    assert np.abs(global_ - plain)[inner].mean() > 0.05  # min/max of log N keeps it in the inputs
    np.testing.assert_array_equal(normalise_patches(np.full((1, 8, 8), np.nan), "log-highpass")[0], 0)


def test_highpass_scaling_keeps_a_faint_filament_beside_a_bright_clump() -> None:
    sky = np.full((64, 64), 1e22)
    sky[:, 10:12] *= 1.3  # a faint filament
    rows, cols = np.mgrid[:64, :64]
    sky *= 1 + 30 * np.exp(-((rows - 32) ** 2 + (cols - 45) ** 2) / (2 * 4.0**2))  # a bright clump
    contrast = {s: float(np.median(normalise_patches(sky, s)[0][:, 10:12] - normalise_patches(sky, s)[0][:, 4:6]))
                for s in ("log-minmax", "log-highpass")}
    assert contrast["log-highpass"] > 1.3 * contrast["log-minmax"]  # the clump squeezes min/max's range more


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
