"""The simulated sky: its physics on known values, and truth that matches the images."""

from __future__ import annotations

import math

import healpy as hp
import numpy as np
import pytest

from nightshift.clusters.config import get_config
from nightshift.clusters.patches import sample_patches
from nightshift.clusters.simulate import (
    cluster_scales, cmb_power_spectrum, draw_clusters, gnfw_projected_profile, k_cmb_to_mjy_sr, paint_compton_y,
    simulate_sky, tsz_spectrum,
)


def test_tsz_spectrum_decrement_null_increment() -> None:
    # in K_CMB per unit y (T_CMB g): Planck's bandpass-averaged -4.03, -2.79, 0.19, 6.21 to a few percent
    t_g = 2.7255 * tsz_spectrum([100.0, 143.0, 217.0, 353.0, 545.0])
    assert t_g[0] == pytest.approx(-4.03, rel=0.03) and t_g[1] == pytest.approx(-2.79, rel=0.03)
    assert abs(t_g[2]) < 0.2 and t_g[3] == pytest.approx(6.21, rel=0.05) and t_g[4] > t_g[3]


def test_unit_conversion_matches_planck() -> None:
    assert k_cmb_to_mjy_sr(545.0) == pytest.approx(58.0, rel=0.03)
    # monochromatic at 857 GHz; Planck's 2.27 averages the steep spectrum over the band
    assert k_cmb_to_mjy_sr(857.0) == pytest.approx(1.44, rel=0.02)


def test_cmb_spectrum_has_the_first_acoustic_peak() -> None:
    cl = cmb_power_spectrum(2000)
    ell = np.arange(2001)
    d_ell = ell * (ell + 1) * cl / (2 * np.pi) * 1e12
    assert 180 < np.argmax(d_ell) < 260 and 4500 < d_ell.max() < 6500 and d_ell[2000] < 400


def test_gnfw_profile_has_unit_integral_and_truncation() -> None:
    x = np.geomspace(1e-3, 5.0, 4000)
    assert 2 * np.pi * np.trapezoid(gnfw_projected_profile(x) * x, x) == pytest.approx(1.0, rel=0.01)
    assert gnfw_projected_profile(np.array([5.5]))[0] == 0.0


def test_cluster_scales_of_a_coma_like_cluster() -> None:
    theta500, y5r500 = cluster_scales(np.array([6e14]), np.array([0.2]))
    assert 5.0 < theta500[0] < 7.5  # arcmin
    assert 1e-3 < y5r500[0] < 4e-3  # arcmin^2
    with pytest.raises(ValueError, match="positive"):
        cluster_scales(np.array([-1.0]), np.array([0.2]))


def test_painted_y_conserves_each_cluster_and_peaks_at_it() -> None:
    config = get_config("tiny", overrides={"random_clusters": 3})
    truth = draw_clusters(config, np.random.default_rng(3), None)
    y_map = paint_compton_y(256, truth)
    total_arcmin2 = y_map.sum() * hp.nside2pixarea(256) * (180 * 60 / math.pi) ** 2
    assert total_arcmin2 == pytest.approx(truth.y5r500_arcmin2.sum(), rel=1e-6)
    brightest = np.argmax(truth.y5r500_arcmin2 / truth.theta500_arcmin**2)
    peak = hp.ang2pix(256, truth.glon[brightest], truth.glat[brightest], lonlat=True)
    assert y_map[peak] > 0 and y_map[peak] >= y_map[hp.get_all_neighbours(256, peak)].max()


def test_injected_clusters_are_where_the_truth_says_with_the_tsz_spectrum() -> None:
    config = get_config("tiny", overrides={"random_clusters": 40, "random_m500_range_msun": [8e14, 1.2e15],
                                           "random_z_range": [0.05, 0.1]})
    sky = simulate_sky(config, None, components=["tsz"])
    patches = sample_patches(sky.maps, sky.truth.glon, sky.truth.glat, patch_px=32, pixel_arcmin=3.4)
    centre = patches[:, :, 14:18, 14:18]
    # decrement at 100 and 143 GHz, increment at 353+, at every injected position
    assert np.all(centre[:, 0].min(axis=(1, 2)) < 0) and np.all(centre[:, 1].min(axis=(1, 2)) < 0)
    assert np.all(centre[:, 3].max(axis=(1, 2)) > 0)
    # the 143 GHz minimum of each patch lies within two HEALPix pixels of the patch centre
    flat_min = patches[:, 1].reshape(len(patches), -1).argmin(axis=1)
    rows, cols = np.unravel_index(flat_min, (32, 32))
    distance_arcmin = np.hypot(rows - 15.5, cols - 15.5) * 3.4
    assert np.median(distance_arcmin) < 2 * hp.nside2resol(256, arcmin=True)


def test_simulation_is_seeded() -> None:
    config = get_config("tiny", overrides={"random_clusters": 5, "nside": 64})
    first, second = simulate_sky(config, None), simulate_sky(config, None)
    np.testing.assert_array_equal(first.maps, second.maps)
    assert first.maps.shape == (6, hp.nside2npix(64)) and first.maps.dtype == np.float32
    assert not np.array_equal(first.maps, simulate_sky(config.with_overrides({"seed": 1}), None).maps)


def test_psz2_analogues_are_placed_independently_of_the_catalogue(tiny_sky, tiny_config) -> None:
    from nightshift.clusters.catalogues import crossmatch, read_psz2, read_references
    from nightshift.clusters.config import catalogue_dir

    directory = catalogue_dir()
    if directory is None:
        pytest.skip("the real PSZ2 catalogue (/work/shared/data/clusters) is absent")
    psz2 = read_psz2(directory)
    truth = tiny_sky.truth
    analogue = truth.psz2_analogue != ""
    assert analogue.sum() == 1653 and np.all(np.isfinite(truth.snr))
    assert truth.psz2_analogue[analogue].tolist() == psz2.name.tolist()
    known = psz2.m500_msun > 0
    np.testing.assert_array_equal(truth.m500_msun[analogue][known], psz2.m500_msun[known])  # the catalogue's masses
    assert np.abs(truth.glat[analogue]).min() >= tiny_config.galactic_mask_deg  # outside the Galactic plane mask
    # not at the catalogue's positions: as few fall within 7' of a PSZ2 cluster as random positions would (0.2 %)
    at_psz2 = crossmatch(truth.glon[analogue], truth.glat[analogue], read_references(directory)[:1], radius_arcmin=7.0).known
    assert at_psz2.sum() <= 10
    # another sky places them elsewhere; the random population does not move with them
    other = draw_clusters(tiny_config.with_overrides({"seed": 1}), np.random.default_rng(1), psz2)
    assert not np.allclose(other.glon[:len(psz2)], truth.glon[analogue])
    without = draw_clusters(tiny_config, np.random.default_rng(0), None)
    again = draw_clusters(tiny_config, np.random.default_rng(0), psz2)
    np.testing.assert_array_equal(again.glon[len(psz2):], without.glon)