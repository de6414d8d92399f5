"""The simulator: truth matches the images, reproducible, statistics near the real cut-out."""

from __future__ import annotations

import numpy as np
import pytest

from scipy import ndimage

from nightshift.filaments.config import default_real_data_dir
from nightshift.filaments.evaluate import dice
from nightshift.filaments.realdata import load_real_cutout, real_data_available
from nightshift.filaments.simulate import (curved_spine, gaussian_random_field, map_statistics, plummer_profile,
                                           simulate_map, simulate_maps)


@pytest.fixture(scope="module")
def maps():
    return simulate_maps(4, 128, seed=3)


def test_maps_are_reproducible_per_seed_and_index(maps) -> None:
    again = simulate_maps(4, 128, seed=3)
    for a, b in zip(maps, again):
        np.testing.assert_array_equal(a.column_density, b.column_density)
        np.testing.assert_array_equal(a.mask, b.mask)
    assert not np.array_equal(maps[0].mask, simulate_maps(1, 128, seed=4)[0].mask)


def test_truth_mask_lies_on_the_spines_and_on_brighter_pixels(maps) -> None:
    for sky in maps:
        for spine in sky.spines:
            rows, cols = np.rint(spine).astype(int).T
            assert sky.mask[np.clip(rows, 0, 127), np.clip(cols, 0, 127)].mean() > 0.95
        inside = sky.mask & sky.usable
        assert np.median(sky.column_density[inside]) > 1.1 * np.median(sky.column_density[~sky.mask & sky.usable])


def test_truth_is_the_width_the_beam_shows(maps) -> None:
    # An oracle that knows the noiseless filament image and takes each pixel at or above half the
    # local peak (within 5 px; and above 2% of the map's median, the sky far from any filament) finds
    # the truth: it is the filaments' observed FWHM, not a sub-beam width.
    found, truth, valid = [], [], []
    for sky in maps:
        image = sky.filament_column_density
        assert image.dtype == np.float32 and image.min() >= 0
        found.append((image >= 0.5 * ndimage.maximum_filter(image, size=5)) & (image > 0.02 * np.nanmedian(sky.column_density)))
        truth.append(sky.mask)
        valid.append(sky.usable)
    assert dice(np.concatenate([f[v] for f, v in zip(found, valid)]), np.concatenate([t[v] for t, v in zip(truth, valid)])) > 0.9


def test_missing_pixels_are_nan_and_not_usable(maps) -> None:
    for sky in maps:
        np.testing.assert_array_equal(np.isnan(sky.column_density), ~sky.usable)
    assert any((~sky.usable).any() for sky in maps)


def test_gaussian_random_field_has_the_requested_slope() -> None:
    field = gaussian_random_field((256, 256), -3.0, np.random.default_rng(0))
    power = np.abs(np.fft.fft2(field)) ** 2
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(256), np.fft.fftfreq(256), indexing="ij"))
    bins = (k * 256).astype(int)
    radial = np.bincount(bins.ravel(), power.ravel()) / np.bincount(bins.ravel())
    scales = np.arange(4, 64)
    slope = np.polyfit(np.log(scales), np.log(radial[scales]), 1)[0]
    assert abs(slope + 3.0) < 0.3
    assert abs(field.std() - 1) < 1e-6


def test_plummer_profile_half_maximum() -> None:
    # p = 2: (1 + r^2)^(-1/2) = 1/2 at r = sqrt(3) r_flat
    assert plummer_profile(np.array(0.0), 1.5, 2.0) == 1.0
    assert plummer_profile(np.array(np.sqrt(3) * 1.5), 1.5, 2.0) == pytest.approx(0.5)


def test_spine_is_smooth_and_inside_the_map() -> None:
    spine = curved_spine((64, 64), 100.0, 0.02, np.random.default_rng(1))
    assert np.all((spine >= 0) & (spine < 64))
    steps = np.hypot(*np.diff(spine, axis=0).T)
    assert np.allclose(steps[1:], 0.5)


def test_too_small_map_is_refused() -> None:
    with pytest.raises(ValueError, match="size_px=4"):
        simulate_map(4, np.random.default_rng(0))


@pytest.mark.skipif(not real_data_available(default_real_data_dir()),
                    reason="the real Hi-GAL cut-out (../shared/data/filaments) is not on this machine")
def test_statistics_are_near_the_real_cutout() -> None:
    real = load_real_cutout(default_real_data_dir())
    measured = map_statistics(real.column_density, real.mask)
    simulated = [map_statistics(m.column_density, m.mask) for m in simulate_maps(6, 256, seed=11)]
    median = {k: float(np.median([s[k] for s in simulated])) for k in measured}
    assert 0.5 < median["median_cm2"] / measured["median_cm2"] < 2
    assert 0.5 < median["p99_cm2"] / measured["p99_cm2"] < 2
    assert 0.5 < median["sigma_ln"] / measured["sigma_ln"] < 1.5
    assert 0.3 < median["mask_fraction"] / measured["mask_fraction"] < 3
    assert abs(median["mask_width_px"] - measured["mask_width_px"]) <= 1.5
    assert abs(median["contrast"] - measured["contrast"]) < 0.3
