"""The classical, non-learning baseline: inclination from a fitted isophotal axis ratio.

The galaxy's isophote (pixels above ``ISOPHOTE_SIGMA`` sky sigmas after a 1-pixel Gaussian
smoothing, the component connected to the centre, holes filled) is fitted with the ellipse of equal
second moments (scikit-image ``regionprops``: the unweighted moments of the isophote's area); its
axis ratio q gives the inclination through the Hubble relation ``cos^2 i = (q^2 - q0^2) / (1 - q0^2)``.
The outer isophote follows the disk more than the bulge does, and its axis ratio is not the
intrinsic one (the PSF rounds it, the sech^2 disk's outskirts are thinner), so both the isophote
level and the effective thickness q0 are fitted to the training galaxies (:func:`fit_isophote_and_q0`,
``nightshift-inclination fit-baseline``) instead of the customary q0 = 0.2, which the simulator's
0.08-0.30 does not support.

Its reject score adds classical anomaly indicators: rotational asymmetry (Conselice 2000), how
face-on the ellipse is, how much of the segment touches the border, low signal-to-noise and
missing pixels near the centre.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from skimage.measure import regionprops

from nightshift.inclination.preprocess import sky_sigma

__all__ = [
    "HUBBLE_Q0", "ISOPHOTE_SIGMA", "BaselineEstimates", "hubble_inclination", "moments_axis_ratio", "isophote_axis_ratio",
    "rotational_asymmetry", "baseline_estimates", "fit_isophote_and_q0",
]

HUBBLE_Q0 = 0.26
"""Effective intrinsic axis ratio, fitted on the training galaxies (``nightshift-inclination fit-baseline``)."""
ISOPHOTE_SIGMA = 3.5
"""Isophote level in sky sigmas of the smoothed image, fitted with ``HUBBLE_Q0``."""
SMOOTHING_PX = 1.0
SNR_REFERENCE = 30.0


@dataclasses.dataclass(frozen=True)
class BaselineEstimates:
    """Per-galaxy baseline results, each (n,): inclination in degrees, axis ratio, reject score (>= 0)."""

    inclination_deg: np.ndarray
    axis_ratio: np.ndarray
    reject_score: np.ndarray


def hubble_inclination(axis_ratio: np.ndarray | float, q0: float = HUBBLE_Q0) -> np.ndarray:
    """Inclination in degrees (90 = edge-on) from an apparent axis ratio through the Hubble relation.

    Axis ratios at or below ``q0`` give 90 deg; 1 gives 0 deg.
    """
    if not 0 <= q0 < 1:
        raise ValueError(f"q0 = {q0}: expected an intrinsic axis ratio in [0, 1)")
    q = np.clip(np.asarray(axis_ratio, dtype=np.float64), q0, 1.0)
    return np.degrees(np.arccos(np.sqrt((q**2 - q0**2) / (1 - q0**2))))


def moments_axis_ratio(image: np.ndarray, mask: np.ndarray) -> float:
    """Axis ratio of the flux-weighted second moments of ``image`` over ``mask`` (1 for an empty mask)."""
    weights = np.where(mask, np.clip(image, 0, None), 0.0)
    total = weights.sum()
    if total <= 0:
        return 1.0
    y, x = np.indices(image.shape, dtype=np.float64)
    xc, yc = (weights * x).sum() / total, (weights * y).sum() / total
    xx = (weights * (x - xc) ** 2).sum() / total
    yy = (weights * (y - yc) ** 2).sum() / total
    xy = (weights * (x - xc) * (y - yc)).sum() / total
    eigen = np.linalg.eigvalsh([[xx, xy], [xy, yy]])
    return float(np.sqrt(max(eigen[0], 0.0) / eigen[1])) if eigen[1] > 0 else 1.0


def isophote_axis_ratio(mask: np.ndarray) -> float:
    """Axis ratio of the ellipse with the second moments of an isophote's area (1 for an empty mask)."""
    regions = regionprops(mask.astype(np.uint8))
    if not regions or regions[0].axis_major_length <= 0:
        return 1.0
    return float(regions[0].axis_minor_length / regions[0].axis_major_length)


def rotational_asymmetry(image: np.ndarray, mask: np.ndarray) -> float:
    """``sum |I - I_180| / (2 sum |I|)`` about the image centre, over ``mask`` and its rotation (0..1)."""
    region = mask | mask[::-1, ::-1]
    rotated = image[::-1, ::-1]
    total = np.abs(image[region]).sum()
    return float(np.abs(image - rotated)[region].sum() / (2 * total)) if total > 0 else 0.0


def _segment(image: np.ndarray, sigma: float, level_sigma: float) -> np.ndarray:
    """Pixels above ``level_sigma`` after smoothing, in the component at (or nearest to) the centre, holes filled."""
    smoothed = ndimage.gaussian_filter(image, SMOOTHING_PX)
    smoothed_sigma = sigma / (2 * np.sqrt(np.pi) * SMOOTHING_PX)  # white noise through the Gaussian kernel
    labels, count = ndimage.label(smoothed > level_sigma * smoothed_sigma)
    if count == 0:
        return np.zeros(image.shape, bool)
    size = image.shape[0]
    centre = labels[size // 2, size // 2]
    if centre == 0:
        y, x = np.nonzero(labels)
        nearest = np.argmin((y - size / 2) ** 2 + (x - size / 2) ** 2)
        centre = labels[y[nearest], x[nearest]]
    return ndimage.binary_fill_holes(labels == centre)


def _images_and_noise(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Band-summed images (NaN as sky) and their sky sigmas."""
    pixels = np.asarray(pixels, dtype=np.float32)
    return np.nan_to_num(pixels).sum(axis=1).astype(np.float64), np.sqrt((sky_sigma(pixels) ** 2).sum(axis=1))


def baseline_estimates(pixels: np.ndarray, *, isophote_sigma: float = ISOPHOTE_SIGMA, q0: float = HUBBLE_Q0) -> BaselineEstimates:
    """Baseline inclinations and reject scores of flux tiles.

    Parameters
    ----------
    pixels : ndarray, shape (n, 3, size, size)
        Fluxes in g, r, i (NaN = missing, counted as sky); the bands are summed.
    isophote_sigma, q0 : float
        Isophote level and effective intrinsic axis ratio (default: the values fitted on training galaxies).

    Returns
    -------
    BaselineEstimates
    """
    pixels = np.asarray(pixels, dtype=np.float32)
    n = len(pixels)
    inclination, axis_ratio, score = np.zeros(n), np.ones(n), np.zeros(n)
    if n == 0:
        return BaselineEstimates(inclination, axis_ratio, score)
    images, sigma = _images_and_noise(pixels)
    size = pixels.shape[-1]
    face_on_axis_ratio = np.sqrt(0.5 + q0**2 * 0.5)  # q at 45 deg through the Hubble relation
    for k in range(n):
        image = images[k]
        mask = _segment(image, sigma[k], isophote_sigma)
        axis_ratio[k] = isophote_axis_ratio(mask)
        inclination[k] = hubble_inclination(axis_ratio[k], q0)
        border = np.concatenate([mask[0], mask[-1], mask[:, 0], mask[:, -1]]).mean()
        snr = np.clip(image[mask], 0, None).sum() / (sigma[k] * np.sqrt(max(mask.sum(), 1)))
        centre = pixels[k, :, size // 4 : size - size // 4, size // 4 : size - size // 4]
        score[k] = (
            rotational_asymmetry(image, mask)
            + 2 * max(0.0, axis_ratio[k] - face_on_axis_ratio)
            + 4 * border
            + max(0.0, 1 - snr / SNR_REFERENCE)
            + np.isnan(centre).any(axis=0).mean()
        )
    return BaselineEstimates(inclination, axis_ratio, score)


def fit_isophote_and_q0(
    pixels: np.ndarray, true_deg: np.ndarray, accepted: np.ndarray, *, levels: Sequence[float], q0s: Sequence[float],
) -> dict[str, float]:
    """The isophote level and effective q0 with the smallest inclination RMS on (training) galaxies.

    Parameters
    ----------
    pixels : ndarray, shape (n, 3, size, size)
        Training galaxies' fluxes.
    true_deg, accepted : ndarray, shape (n,)
        Their true inclinations and which are scored (the accepted ones, as in evaluation).
    levels, q0s : sequence of float
        The grid of isophote levels (sky sigmas) and intrinsic axis ratios to try.

    Returns
    -------
    dict
        ``isophote_sigma``, ``q0`` and the training ``rms_deg`` at them.
    """
    images, sigma = _images_and_noise(pixels)
    accepted = np.asarray(accepted, dtype=bool)
    true_deg = np.asarray(true_deg, dtype=np.float64)[accepted]
    best = {"rms_deg": float("inf")}
    for level in levels:
        ratios = np.array([isophote_axis_ratio(_segment(images[k], sigma[k], level)) for k in np.flatnonzero(accepted)])
        for q0 in q0s:
            rms_deg = float(np.sqrt(np.mean((hubble_inclination(ratios, q0) - true_deg) ** 2)))
            if rms_deg < best["rms_deg"]:
                best = {"isophote_sigma": float(level), "q0": float(q0), "rms_deg": rms_deg}
    return best
