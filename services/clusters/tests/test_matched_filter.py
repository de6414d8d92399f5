"""The matched-filter baseline on patches with a known cluster."""

from __future__ import annotations

import numpy as np
import pytest

from nightshift.clusters.config import HFI_BANDS
from nightshift.clusters.matched_filter import ilc_y, matched_filter_snr, multifrequency_snr
from nightshift.clusters.simulate import T_CMB_K, gnfw_projected_profile, k_cmb_to_mjy_sr, tsz_spectrum

PIXEL_ARCMIN = 1.7


def _cluster_y(size: int = 64, amplitude: float = 3e-5, theta500_arcmin: float = 5.0) -> np.ndarray:
    rows, cols = np.mgrid[0:size, 0:size]
    radius = np.hypot(rows - size // 2, cols - size // 2) * PIXEL_ARCMIN
    profile = gnfw_projected_profile(np.maximum(radius, 0.5) / theta500_arcmin)
    return amplitude * profile / profile.max()


def _bands_of(y: np.ndarray, cmb: np.ndarray, rng: np.random.Generator, noise_k: float = 2e-6) -> np.ndarray:
    """(bands, H, W) in each band's unit: CMB + tSZ + white noise (no beams)."""
    planes = []
    for band in HFI_BANDS:
        k_cmb = cmb + T_CMB_K * tsz_spectrum(band.frequency_ghz) * y + rng.normal(0, noise_k, y.shape)
        planes.append(k_cmb * (k_cmb_to_mjy_sr(band.frequency_ghz) if band.unit == "MJy/sr" else 1.0))
    return np.stack(planes)


def test_ilc_removes_the_cmb_and_keeps_y() -> None:
    rng = np.random.default_rng(1)
    y = _cluster_y()
    cmb = rng.normal(0, 1e-4, y.shape)
    estimate = ilc_y(_bands_of(y, cmb, rng)[None], HFI_BANDS, pixel_arcmin=PIXEL_ARCMIN)[0]
    assert estimate.shape == y.shape
    centre = estimate[28:37, 28:37].mean() - np.median(estimate)
    assert centre == pytest.approx(y[28:37, 28:37].mean(), rel=0.5)  # smoothed to 10', so lower than the peak
    assert np.std(estimate[:10, :10]) < 0.2 * y.max()  # 100 uK of CMB left no y-sized residual


def test_snr_peaks_at_a_cluster_and_stays_low_without_one() -> None:
    rng = np.random.default_rng(2)
    cmb = rng.normal(0, 5e-5, (64, 64))
    with_cluster = _bands_of(_cluster_y(), cmb, rng)
    empty = _bands_of(np.zeros((64, 64)), cmb, rng)
    snr = multifrequency_snr(np.stack([with_cluster, empty]), HFI_BANDS, pixel_arcmin=PIXEL_ARCMIN)
    peak = np.unravel_index(np.argmax(snr[0]), snr[0].shape)
    assert abs(peak[0] - 32) <= 2 and abs(peak[1] - 32) <= 2
    assert snr[0].max() > 8 and snr[1].max() < snr[0].max() / 2


def test_empty_and_wrong_input() -> None:
    assert multifrequency_snr(np.zeros((0, 6, 8, 8)), HFI_BANDS, pixel_arcmin=1.7).shape == (0, 8, 8)
    with pytest.raises(ValueError, match="expected \\(n, height, width\\)"):
        matched_filter_snr(np.zeros((8, 8)), pixel_arcmin=1.7)
    with pytest.raises(ValueError, match="at least three HFI bands"):
        ilc_y(np.zeros((1, 2, 8, 8)), HFI_BANDS[:2], pixel_arcmin=1.7)
