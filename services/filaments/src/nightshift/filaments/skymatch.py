"""The simulated sky against the real Hi-GAL cut-out: the distribution of log10 N(H2) and the power
spectrum of the background, with a plot (``nightshift-filaments sky-match``).

The background is the map outside the filaments: the mask grown by 2 pixels (so the filaments' wings
do not count) and the missing pixels are filled from their surroundings (normalised Gaussian
convolution, sigma 4 px); the power spectrum is that of ln N(H2) minus its mean, tapered by a 2-D
Hann window, averaged over annuli of spatial frequency k (cycles per pixel) and divided by the
window's power, so maps of different sizes compare. Its slope is fitted between k = 1/64 and 1/12
px^-1 (scales of 12-64 px: above the beam's smoothing, below the cut-out's width).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

__all__ = ["LOG_NH2_EDGES", "K_EDGES", "SLOPE_K_RANGE", "background_power_spectrum", "spectrum_slope",
           "sky_statistics", "histogram_overlap", "plot_sky_match"]

LOG_NH2_EDGES = np.arange(21.0, 23.4001, 0.025)
"""Bins of the log10 N(H2) histograms (N in cm^-2)."""

K_EDGES = np.geomspace(1 / 128, 0.5, 22)
"""Bins of spatial frequency of the power spectra, in cycles per pixel."""

SLOPE_K_RANGE = (1 / 64, 1 / 12)
"""Spatial frequencies (cycles per pixel) over which the spectrum's power-law slope is fitted."""


def background_power_spectrum(column_density: np.ndarray, excluded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Azimuthally averaged power spectrum of the background's ln N(H2).

    Parameters
    ----------
    column_density : numpy.ndarray
        (H, W) N(H2) in cm^-2, NaN where missing.
    excluded : numpy.ndarray
        bool (H, W) pixels that are not background (the filament mask, already grown).

    Returns
    -------
    k : numpy.ndarray
        Centres of the :data:`K_EDGES` bins (geometric), in cycles per pixel.
    power : numpy.ndarray
        Mean power per bin (NaN for bins with no frequency), normalised by the window's power.
    """
    values = np.asarray(column_density, float)
    keep = np.isfinite(values) & (values > 0) & ~np.asarray(excluded, bool)
    if not keep.any():
        raise ValueError("background_power_spectrum: no background pixel with data")
    log_n = np.where(keep, np.log(np.where(keep, values, 1.0)), 0.0)
    weight = ndimage.gaussian_filter(keep.astype(float), 4.0)
    smooth = ndimage.gaussian_filter(log_n, 4.0) / np.maximum(weight, 1e-6)
    mean = log_n[keep].mean()
    filled = np.where(keep, log_n, np.where(weight > 1e-3, smooth, mean)) - mean
    window = np.outer(np.hanning(filled.shape[0]), np.hanning(filled.shape[1]))
    power = np.abs(np.fft.fft2(filled * window)) ** 2 / np.sum(window ** 2)
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(filled.shape[0]), np.fft.fftfreq(filled.shape[1]), indexing="ij"))
    bin_of = np.digitize(k.ravel(), K_EDGES) - 1
    inside = (bin_of >= 0) & (bin_of < len(K_EDGES) - 1)
    counts = np.bincount(bin_of[inside], minlength=len(K_EDGES) - 1)
    sums = np.bincount(bin_of[inside], power.ravel()[inside], minlength=len(K_EDGES) - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sqrt(K_EDGES[:-1] * K_EDGES[1:]), np.where(counts > 0, sums / counts, np.nan)


def spectrum_slope(k: np.ndarray, power: np.ndarray, k_range: tuple[float, float] = SLOPE_K_RANGE) -> float:
    """Power-law index of ``power(k)`` fitted (least squares in log-log) over ``k_range``."""
    use = (k >= k_range[0]) & (k <= k_range[1]) & np.isfinite(power) & (power > 0)
    return float(np.polyfit(np.log(k[use]), np.log(power[use]), 1)[0])


def sky_statistics(column_densities: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> dict[str, Any]:
    """The distribution of log10 N(H2) and the background's power spectrum of a set of maps.

    Parameters
    ----------
    column_densities : sequence of numpy.ndarray
        (H, W) N(H2) maps in cm^-2, NaN where missing (sizes may differ).
    masks : sequence of numpy.ndarray
        bool (H, W) filament masks.

    Returns
    -------
    dict
        ``histogram`` (density per :data:`LOG_NH2_EDGES` bin, all pixels with data pooled),
        ``histogram_background`` (the same outside the grown masks), ``k`` and ``power`` (the mean
        of the maps' spectra), and the figures ``log10_nh2_p01``, ``log10_nh2_median``,
        ``log10_nh2_p99``, ``log10_nh2_std`` and ``background_slope`` (fitted on the mean spectrum).
    """
    pooled, background, spectra = [], [], []
    for column_density, mask in zip(column_densities, masks):
        grown = ndimage.binary_dilation(np.asarray(mask, bool), iterations=2)
        good = np.isfinite(column_density) & (column_density > 0)
        pooled.append(np.log10(column_density[good]))
        background.append(np.log10(column_density[good & ~grown]))
        k, power = background_power_spectrum(column_density, grown)
        spectra.append(power)
    values, outside = np.concatenate(pooled), np.concatenate(background)
    stacked = np.stack(spectra)
    counts = np.isfinite(stacked).sum(axis=0)  # small maps have no power at the lowest frequencies
    power = np.where(counts > 0, np.nansum(stacked, axis=0) / np.maximum(counts, 1), np.nan)
    return {
        "histogram": np.histogram(values, LOG_NH2_EDGES, density=True)[0],
        "histogram_background": np.histogram(outside, LOG_NH2_EDGES, density=True)[0],
        "k": k, "power": power,
        "log10_nh2_p01": float(np.percentile(values, 1)), "log10_nh2_median": float(np.median(values)),
        "log10_nh2_p99": float(np.percentile(values, 99)), "log10_nh2_std": float(values.std()),
        "background_slope": spectrum_slope(k, power),
    }


def histogram_overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Shared area of two density histograms on :data:`LOG_NH2_EDGES` (1: identical, 0: disjoint)."""
    return float(np.sum(np.minimum(a, b) * np.diff(LOG_NH2_EDGES)))


def plot_sky_match(real: dict[str, Any], simulated: dict[str, Any], path: Path, *, simulated_label: str = "simulated") -> Path:
    """Histograms of log10 N(H2) and background power spectra, real against simulated (from
    :func:`sky_statistics`), side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    centres = 0.5 * (LOG_NH2_EDGES[1:] + LOG_NH2_EDGES[:-1])
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.3))
    for stats, name, colour in ((real, "real Hi-GAL cut-out", "k"), (simulated, simulated_label, "tab:orange")):
        left.step(centres, stats["histogram"], where="mid", color=colour, label=f"{name}: all pixels")
        left.step(centres, stats["histogram_background"], where="mid", color=colour, linestyle=":",
                  label=f"{name}: background")
        right.loglog(stats["k"], stats["power"], "o-", color=colour, markersize=3,
                     label=f"{name} (slope {stats['background_slope']:.2f})")
    left.set(xlabel="log10 N(H2) [cm^-2]", ylabel="density", title="column-density distribution")
    right.axvspan(*SLOPE_K_RANGE, color="0.9", zorder=0)
    right.set(xlabel="spatial frequency k [cycles / pixel of 11.5\"]", ylabel="power of ln N (background)",
              title="background power spectrum (shaded: slope fit)")
    left.legend(fontsize=8)
    right.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
