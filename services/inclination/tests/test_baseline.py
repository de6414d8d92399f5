"""The isophote + Hubble-relation baseline on hand-made and simulated galaxies."""

from __future__ import annotations

import numpy as np
import pytest

from nightshift.inclination.baseline import (
    baseline_estimates, fit_isophote_and_q0, hubble_inclination, isophote_axis_ratio, moments_axis_ratio, rotational_asymmetry,
)
from nightshift.inclination.simulate import GalaxyParameters, render_galaxy


def test_hubble_relation_at_known_points() -> None:
    assert hubble_inclination(1.0) == pytest.approx(0.0)
    assert hubble_inclination(0.2, q0=0.2) == pytest.approx(90.0)
    assert hubble_inclination(0.1, q0=0.2) == pytest.approx(90.0)  # thinner than q0: edge-on
    q = np.sqrt(0.25 + 0.04 * 0.75)  # cos 60 = 0.5 with q0 = 0.2
    assert hubble_inclination(q, q0=0.2) == pytest.approx(60.0)
    assert hubble_inclination(0.5, q0=0.0) == pytest.approx(60.0)
    with pytest.raises(ValueError, match="q0 = 1.0"):
        hubble_inclination(0.5, q0=1.0)


def test_moments_of_a_gaussian_ellipse() -> None:
    y, x = np.indices((101, 101)) - 50.0
    image = np.exp(-0.5 * ((x / 8) ** 2 + (y / 2) ** 2))
    assert moments_axis_ratio(image, np.ones(image.shape, bool)) == pytest.approx(0.25, abs=1e-3)
    assert moments_axis_ratio(image, np.zeros(image.shape, bool)) == 1.0


def test_isophote_axis_ratio_of_a_filled_ellipse() -> None:
    y, x = np.indices((101, 101)) - 50.0
    assert isophote_axis_ratio((x / 40) ** 2 + (y / 10) ** 2 <= 1) == pytest.approx(0.25, abs=0.01)
    assert isophote_axis_ratio(np.zeros((8, 8), bool)) == 1.0


def test_rotational_asymmetry() -> None:
    y, x = np.indices((64, 64)) - 31.5
    symmetric = np.exp(-(x**2 + y**2) / 50)
    mask = np.ones(symmetric.shape, bool)
    assert rotational_asymmetry(symmetric, mask) == pytest.approx(0.0, abs=1e-12)
    lopsided = symmetric * (x > 0)
    assert rotational_asymmetry(lopsided, mask) == pytest.approx(1.0)


def test_baseline_recovers_a_clean_disk_and_is_biased_face_on_by_a_bulge() -> None:
    disk = GalaxyParameters(label="accept", reason="", inclination_deg=70.0, q0=0.2, scale_length_px=5.0, d25_arcsec=60.0,
                            pixel_scale_arcsec=1.9, flux_r=100.0, snr=200.0, psf_fwhm_px=0.5, noise_seed=4)
    bulgy = GalaxyParameters(**{**disk.__dict__, "bulge_to_total": 0.5, "bulge_re_px": 3.0, "bulge_q0": 0.9})
    estimates = baseline_estimates(np.stack([render_galaxy(disk, size=64), render_galaxy(bulgy, size=64)]))
    assert estimates.inclination_deg[0] == pytest.approx(70.0, abs=4.0)
    assert estimates.inclination_deg[1] < estimates.inclination_deg[0] - 5
    assert baseline_estimates(np.zeros((0, 3, 64, 64))).inclination_deg.shape == (0,)


def test_fit_picks_the_grid_point_of_least_rms() -> None:
    disk = GalaxyParameters(label="accept", reason="", inclination_deg=70.0, q0=0.2, scale_length_px=5.0, d25_arcsec=60.0,
                            pixel_scale_arcsec=1.9, flux_r=100.0, snr=200.0, psf_fwhm_px=2.0, noise_seed=4)
    true_deg = np.array([50.0, 60.0, 70.0, 80.0])
    pixels = np.stack([render_galaxy(GalaxyParameters(**{**disk.__dict__, "inclination_deg": i}), size=64) for i in true_deg])
    accepted = np.ones(len(true_deg), bool)
    levels, q0s = (2.0, 4.0), (0.0, 0.2, 0.4)
    fitted = fit_isophote_and_q0(pixels, true_deg, accepted, levels=levels, q0s=q0s)

    def rms_at(level: float, q0: float) -> float:
        estimates = baseline_estimates(pixels, isophote_sigma=level, q0=q0)
        return float(np.sqrt(np.mean((estimates.inclination_deg - true_deg) ** 2)))

    assert fitted["rms_deg"] == pytest.approx(rms_at(fitted["isophote_sigma"], fitted["q0"]))
    assert all(fitted["rms_deg"] <= rms_at(level, q0) + 1e-9 for level in levels for q0 in q0s)
    assert len({round(rms_at(level, q0), 3) for level in levels for q0 in q0s}) > 1  # the grid points differ
