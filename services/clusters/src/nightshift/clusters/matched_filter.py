"""The classical, non-learning cluster finder: constrained ILC y-map + multi-scale matched filter.

A simplified version of the Planck multi-frequency matched filter (Melin et al. 2006; Planck 2015
XXVII) on flat patches: the six HFI bands (the y-map band is not used) are brought to a common
10' beam, combined with the constrained internal linear combination that keeps the tSZ spectrum
with unit response and removes the CMB exactly (weights from each patch's band covariance), and
the resulting y estimate is matched-filtered with beam-convolved GNFW profiles of a few sizes,
the noise power spectrum estimated from the patch itself. The S/N map is the filtered map over
its robust standard deviation (``astropy.stats.mad_std``), the maximum over filter sizes.

The same S/N, read at a cluster's position, is the truth S/N of the simulated clusters, as the
Planck catalogues quote the S/N of their matched filters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from astropy.stats import mad_std

from nightshift.clusters.config import BandInfo
from nightshift.clusters.simulate import T_CMB_K, gnfw_projected_profile, k_cmb_to_mjy_sr, tsz_spectrum

__all__ = ["COMMON_FWHM_ARCMIN", "FILTER_THETA500_ARCMIN", "ilc_y", "matched_filter_snr", "multifrequency_snr"]

COMMON_FWHM_ARCMIN = 10.0
FILTER_THETA500_ARCMIN = (2.0, 4.0, 8.0)


def _spatial_frequencies(height: int, width: int, pixel_arcmin: float) -> np.ndarray:
    """|k| in radians per arcmin on the FFT grid, shape (height, width)."""
    ky = np.fft.fftfreq(height, d=pixel_arcmin)
    kx = np.fft.fftfreq(width, d=pixel_arcmin)
    return 2.0 * math.pi * np.hypot(*np.meshgrid(ky, kx, indexing="ij"))


def _gaussian_transfer(k: np.ndarray, fwhm_arcmin: float) -> np.ndarray:
    sigma = fwhm_arcmin / math.sqrt(8.0 * math.log(2.0))
    return np.exp(-0.5 * (k * sigma) ** 2)


def _hfi_in_k_cmb(patches: np.ndarray, bands: Sequence[BandInfo]) -> tuple[np.ndarray, list[BandInfo]]:
    """The HFI bands of (n, bands, H, W) patches in K_CMB, NaN filled with each band's patch median."""
    keep = [i for i, b in enumerate(bands) if b.unit in ("K_CMB", "MJy/sr")]
    selected = patches[:, keep].astype(np.float64)
    for j, i in enumerate(keep):
        if bands[i].unit == "MJy/sr":
            selected[:, j] /= k_cmb_to_mjy_sr(bands[i].frequency_ghz)
    medians = np.nanmedian(selected.reshape(*selected.shape[:2], -1), axis=-1)
    selected = np.where(np.isnan(selected), medians[..., None, None], selected)
    return np.nan_to_num(selected), [bands[i] for i in keep]


def ilc_y(patches: np.ndarray, bands: Sequence[BandInfo], *, pixel_arcmin: float) -> np.ndarray:
    """Compton-y estimate of each patch by the CMB-nulling constrained ILC at a common 10' beam.

    Parameters
    ----------
    patches : ndarray
        Shape (n, bands, H, W), each band in its unit (K_CMB or MJy/sr; other bands ignored).
    bands : sequence of BandInfo
        The bands of axis 1.
    pixel_arcmin : float
        Pixel size in arcmin.

    Returns
    -------
    ndarray
        Shape (n, H, W), float64, Compton-y at 10' FWHM resolution.
    """
    data, hfi = _hfi_in_k_cmb(np.asarray(patches), bands)
    if len(hfi) < 3:
        raise ValueError(f"the ILC needs at least three HFI bands, got {[b.name for b in hfi]}")
    n, nb, height, width = data.shape
    k = _spatial_frequencies(height, width, pixel_arcmin)
    transfer = np.stack([
        _gaussian_transfer(k, math.sqrt(max(COMMON_FWHM_ARCMIN**2 - b.beam_fwhm_arcmin**2, 0.0))) for b in hfi
    ])
    smoothed = np.fft.ifft2(np.fft.fft2(data) * transfer[None]).real
    flat = smoothed.reshape(n, nb, -1)
    flat = flat - flat.mean(axis=-1, keepdims=True)
    covariance = flat @ flat.transpose(0, 2, 1) / flat.shape[-1]
    covariance += np.eye(nb) * 1e-6 * np.trace(covariance, axis1=1, axis2=2)[:, None, None] / nb
    mixing = np.stack([T_CMB_K * tsz_spectrum([b.frequency_ghz for b in hfi]), np.ones(nb)], axis=1)  # (bands, 2)
    inverse_mixing = np.linalg.solve(covariance, np.broadcast_to(mixing, (n, nb, 2)))  # C^-1 A
    gram = mixing.T @ inverse_mixing  # A^T C^-1 A, (n, 2, 2)
    weights = np.linalg.solve(gram, np.broadcast_to(np.array([1.0, 0.0]), (n, 2))[..., None])[..., 0]
    weights = np.einsum("nbk,nk->nb", inverse_mixing, weights)
    return np.einsum("nb,nbp->np", weights, flat).reshape(n, height, width)


def _template_transfer(k: np.ndarray, height: int, width: int, pixel_arcmin: float, theta500_arcmin: float) -> np.ndarray:
    """FFT of a unit-Y GNFW profile of size theta500 convolved with the common beam, centred at pixel (0, 0)."""
    dy = np.fft.fftfreq(height, d=1.0 / height) * pixel_arcmin
    dx = np.fft.fftfreq(width, d=1.0 / width) * pixel_arcmin
    radius = np.hypot(*np.meshgrid(dy, dx, indexing="ij"))
    profile = gnfw_projected_profile(np.maximum(radius, 0.5 * pixel_arcmin) / theta500_arcmin)
    return np.fft.fft2(profile) * _gaussian_transfer(k, COMMON_FWHM_ARCMIN)


def matched_filter_snr(
    y_patches: np.ndarray, *, pixel_arcmin: float, theta500_arcmin: Sequence[float] = FILTER_THETA500_ARCMIN,
) -> np.ndarray:
    """S/N maps of y patches matched-filtered with GNFW templates: the maximum over sizes.

    Parameters
    ----------
    y_patches : ndarray
        Shape (n, H, W), Compton-y at the common 10' beam.
    pixel_arcmin : float
        Pixel size in arcmin.
    theta500_arcmin : sequence of float
        Template sizes in arcmin.

    Returns
    -------
    ndarray
        Shape (n, H, W): filtered map over its robust standard deviation, per patch.
    """
    y_patches = np.asarray(y_patches, dtype=np.float64)
    if y_patches.ndim != 3:
        raise ValueError(f"y_patches shape {y_patches.shape}: expected (n, height, width)")
    n, height, width = y_patches.shape
    if n == 0:
        return np.zeros_like(y_patches)
    k = _spatial_frequencies(height, width, pixel_arcmin)
    spectrum = np.fft.fft2(y_patches - y_patches.mean(axis=(1, 2), keepdims=True))
    # noise power: the patch's own power, averaged in rings of |k| (bins of one FFT mode)
    ring = np.minimum((k / k[k > 0].min()).round().astype(int), max(height, width))
    n_rings = ring.max() + 1
    index = (np.arange(n)[:, None, None] * n_rings + ring[None]).ravel()
    power = np.bincount(index, weights=(np.abs(spectrum) ** 2).ravel(), minlength=n * n_rings)
    counts = np.bincount(index, minlength=n * n_rings)
    noise_power = (power / np.maximum(counts, 1)).reshape(n, n_rings)[:, ring]
    noise_power = np.maximum(noise_power, 1e-30 + 1e-12 * noise_power.max(axis=(1, 2), keepdims=True))
    best = np.full(y_patches.shape, -np.inf)
    for theta in theta500_arcmin:
        template = _template_transfer(k, height, width, pixel_arcmin, theta)
        filtered = np.fft.ifft2(spectrum * np.conj(template)[None] / noise_power).real
        scale = mad_std(filtered.reshape(n, -1), axis=1)
        best = np.maximum(best, filtered / np.where(scale > 0, scale, 1.0)[:, None, None])
    return best


def multifrequency_snr(patches: np.ndarray, bands: Sequence[BandInfo], *, pixel_arcmin: float) -> np.ndarray:
    """The baseline's S/N maps, shape (n, H, W), of (n, bands, H, W) patches: ILC then matched filter."""
    patches = np.asarray(patches)
    if len(patches) == 0:
        return np.zeros((0, *patches.shape[2:]))
    return matched_filter_snr(ilc_y(patches, bands, pixel_arcmin=pixel_arcmin), pixel_arcmin=pixel_arcmin)
