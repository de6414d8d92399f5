"""The MMF baseline on small patches with a known cluster and known noise (CMB + white noise at the HFI depths)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nightshift.clusters.config import HFI_BANDS
from nightshift.clusters.detections import Detections
from nightshift.clusters.matched_filter import mmf_maps, mmf_peaks, mmf_sigma, multifrequency_snr, snr_at
from nightshift.clusters.simulate import T_CMB_K, gnfw_projected_profile, k_cmb_to_mjy_sr, tsz_spectrum

PIXEL = 1.7  # arcmin
SIZE = 64
CMB_RMS_K = 8e-5
CMB_SCALE_ARCMIN = 6.0


def _k() -> np.ndarray:
    f = np.fft.fftfreq(SIZE, d=PIXEL)
    return 2 * math.pi * np.hypot(*np.meshgrid(f, f, indexing="ij"))


def _beam(fwhm: float) -> np.ndarray:
    return np.exp(-0.5 * (_k() * fwhm / math.sqrt(8 * math.log(2))) ** 2)


def _cmb_filter() -> np.ndarray:
    """Amplitude in Fourier space of the test's CMB-like field (white noise times this, then scaled)."""
    return np.exp(-0.5 * (_k() * CMB_SCALE_ARCMIN) ** 2)


def _patch(rng, *, y5r500: float, theta500: float, row: int, col: int, bands=HFI_BANDS) -> np.ndarray:
    """(bands, H, W) in each band's unit: a GNFW cluster painted in pixel space, CMB, beams, white noise."""
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    radius = np.hypot(rows - row, cols - col) * PIXEL
    y = y5r500 / theta500**2 * gnfw_projected_profile(np.maximum(radius, 0.5 * PIXEL) / theta500)
    cmb_amplitude = CMB_RMS_K / math.sqrt(np.mean(_cmb_filter() ** 2))
    cmb = np.fft.fft2(rng.standard_normal((SIZE, SIZE))) * _cmb_filter() * cmb_amplitude
    planes = []
    for band in bands:
        signal = cmb + np.fft.fft2(T_CMB_K * tsz_spectrum(band.frequency_ghz) * y)
        k_cmb = np.fft.ifft2(signal * _beam(band.beam_fwhm_arcmin)).real + rng.normal(0, band.noise_depth / PIXEL, y.shape) / (
            k_cmb_to_mjy_sr(band.frequency_ghz) if band.unit == "MJy/sr" else 1.0)
        planes.append(k_cmb * (k_cmb_to_mjy_sr(band.frequency_ghz) if band.unit == "MJy/sr" else 1.0))
    return np.stack(planes)


def _expected_snr(y5r500: float, theta500: float, bands=HFI_BANDS) -> float:
    """Y / sigma of the ideal filter with the true noise: P(k) = CMB b b^T + white noise, per DFT mode."""
    npix = SIZE * SIZE
    cmb_power = npix * (CMB_RMS_K / math.sqrt(np.mean(_cmb_filter() ** 2))) ** 2 * _cmb_filter() ** 2
    beams = np.stack([_beam(b.beam_fwhm_arcmin) for b in bands])
    white = np.array([npix * (b.noise_depth / PIXEL / (k_cmb_to_mjy_sr(b.frequency_ghz) if b.unit == "MJy/sr" else 1.0)) ** 2
                      for b in bands])
    f = np.fft.fftfreq(SIZE, d=1.0 / SIZE) * PIXEL
    radius = np.hypot(*np.meshgrid(f, f, indexing="ij"))
    tau = np.fft.fft2(gnfw_projected_profile(np.maximum(radius, 0.5 * PIXEL) / theta500) / theta500**2).real
    a = T_CMB_K * np.array([tsz_spectrum(b.frequency_ghz) for b in bands])[:, None, None] * beams * tau
    total = 0.0
    for index in zip(*np.nonzero(_k() > 0)):
        vector = a[(slice(None), *index)]
        b = beams[(slice(None), *index)]
        power = cmb_power[index] * np.outer(b, b) + np.diag(white)
        total += vector @ np.linalg.solve(power, vector)
    return y5r500 * math.sqrt(total)


def test_mmf_recovers_a_bright_cluster_at_its_position_size_and_snr() -> None:
    rng = np.random.default_rng(3)
    y5r500, theta500, row, col = 2.5e-3, 5.0, 22, 40
    expected = _expected_snr(y5r500, theta500)
    assert 12 < expected < 40  # a bright cluster, not a marginal one
    maps = mmf_maps(_patch(rng, y5r500=y5r500, theta500=theta500, row=row, col=col)[None], HFI_BANDS, pixel_arcmin=PIXEL)
    peaks = mmf_peaks(maps.snr, maps.theta500_arcmin, threshold=5.0)
    assert len(peaks) == 1  # the cluster and nothing else
    _, peak_row, peak_col, snr, theta = peaks[0]
    assert abs(peak_row - row) <= 1 and abs(peak_col - col) <= 1
    assert snr == pytest.approx(expected, rel=0.25)
    assert theta500 / 2 <= theta <= theta500 * 2  # size and Y are degenerate in the MMF (Planck 2015 XXVII): loosely
    assert maps.y5r500_arcmin2[0, peak_row, peak_col] == pytest.approx(y5r500, rel=0.3)


def test_injected_snr_is_the_true_y_over_the_filter_noise() -> None:
    """mmf_sigma with the cluster's own signal removed gives the S/N the ideal filter with the true noise has."""
    rng = np.random.default_rng(4)
    patches = np.stack([_patch(rng, y5r500=y, theta500=t, row=SIZE // 2, col=SIZE // 2) for y, t in ((2e-3, 3.0), (4e-3, 8.0))])
    # sample_patches puts the centre at pixel (H-1)/2; these are painted at H/2, half a pixel off: close enough
    sigma = mmf_sigma(patches, HFI_BANDS, pixel_arcmin=PIXEL, theta500_arcmin=np.array([3.0, 8.0]),
                      known_y5r500_arcmin2=np.array([2e-3, 4e-3]))
    for y, t, s in zip((2e-3, 4e-3), (3.0, 8.0), sigma):
        assert y / s == pytest.approx(_expected_snr(y, t), rel=0.15)


def test_snr_measured_at_a_candidate_is_the_clusters() -> None:
    """A faint cluster's S/N read at a candidate one pixel off (a U-Net barycentre) is the ideal filter's; none on an empty patch."""
    rng = np.random.default_rng(7)
    y5r500, theta500, row, col = 1.0e-3, 4.0, 30, 25
    expected = _expected_snr(y5r500, theta500)
    assert 5 < expected < 9  # the faint end the candidates' S/N is for
    patches = np.stack([_patch(rng, y5r500=y5r500, theta500=theta500, row=row, col=col),
                        _patch(rng, y5r500=0.0, theta500=theta500, row=row, col=col)])
    maps = mmf_maps(patches, HFI_BANDS, pixel_arcmin=PIXEL)
    candidates = Detections(tile=np.array([0, 1]), x=np.array([col - 1.0, col - 1.0]), y=np.array([row + 1.0, row + 1.0]),
                            radius_px=np.ones(2), score=np.ones(2), n_pixels=np.ones(2, int), edge_px=np.full(2, 20.0),
                            glon=np.full(2, np.nan), glat=np.full(2, np.nan), mmf_snr=np.full(2, np.nan))
    measured = snr_at(candidates, maps, radius_px=2.0)
    assert measured[0] == pytest.approx(expected, rel=0.3)
    assert measured[1] < 4.0
    assert snr_at(candidates, maps, radius_px=0.0)[0] <= measured[0]  # the window only adds pixels
    assert snr_at(candidates.select(np.zeros(2, bool)), maps, radius_px=2.0).shape == (0,)


def test_empty_patch_has_no_bright_peak() -> None:
    rng = np.random.default_rng(5)
    snr = multifrequency_snr(np.stack([_patch(rng, y5r500=0.0, theta500=4.0, row=32, col=32) for _ in range(3)]),
                             HFI_BANDS, pixel_arcmin=PIXEL)
    assert snr.max() < 5.0
    assert 0.7 < snr.std() < 1.4  # S/N in units of the filter noise


def test_mmf_beats_a_single_band_filter_on_a_tsz_source() -> None:
    """The same filter on 143 GHz alone cannot remove the CMB: the six-band MMF's S/N is far higher."""
    rng = np.random.default_rng(6)
    patch = _patch(rng, y5r500=2e-3, theta500=4.0, row=32, col=32)
    six = mmf_maps(patch[None], HFI_BANDS, pixel_arcmin=PIXEL).snr[0, 30:35, 30:35].max()
    single = mmf_maps(patch[None, 1:2], HFI_BANDS[1:2], pixel_arcmin=PIXEL).snr[0, 30:35, 30:35].max()
    assert HFI_BANDS[1].name == "hfi_143"
    assert six > 8 and six > 2 * single
    assert _expected_snr(2e-3, 4.0) > 2 * _expected_snr(2e-3, 4.0, bands=HFI_BANDS[1:2])


def test_empty_and_wrong_input() -> None:
    assert multifrequency_snr(np.zeros((0, 6, 8, 8)), HFI_BANDS, pixel_arcmin=1.7).shape == (0, 8, 8)
    with pytest.raises(ValueError, match="expected \\(n, bands, height, width\\)"):
        multifrequency_snr(np.zeros((8, 8)), HFI_BANDS, pixel_arcmin=1.7)
