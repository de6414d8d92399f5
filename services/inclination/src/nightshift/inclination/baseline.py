"""The classical, non-learning baseline: inclination from the axis ratio of a moments ellipse.

The galaxy's segment (pixels above 2 sigma of the sky after a 1-pixel Gaussian smoothing,
connected to the centre) gives flux-weighted second moments; their eigenvalues give the axis ratio
``q = sqrt(lambda_min / lambda_max)``, and the Hubble relation with the customary intrinsic axis
ratio q0 = 0.2 gives ``cos^2 i = (q^2 - q0^2) / (1 - q0^2)``. This is how inclinations come from
photometric ellipticities; bulges make the moments rounder and so bias it towards face-on.

Its reject score adds classical anomaly indicators: rotational asymmetry (Conselice 2000), how
face-on the ellipse is, how much of the segment touches the border, low signal-to-noise and
missing pixels near the centre.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

from nightshift.inclination.preprocess import sky_sigma

__all__ = ["HUBBLE_Q0", "BaselineEstimates", "hubble_inclination", "moments_axis_ratio", "rotational_asymmetry", "baseline_estimates"]

HUBBLE_Q0 = 0.2
DETECTION_SIGMA = 2.0
SMOOTHING_PX = 1.0
FACE_ON_AXIS_RATIO = float(np.sqrt(0.5 + HUBBLE_Q0**2 * 0.5))  # q at 45 deg through the Hubble relation
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


def rotational_asymmetry(image: np.ndarray, mask: np.ndarray) -> float:
    """``sum |I - I_180| / (2 sum |I|)`` about the image centre, over ``mask`` and its rotation (0..1)."""
    region = mask | mask[::-1, ::-1]
    rotated = image[::-1, ::-1]
    total = np.abs(image[region]).sum()
    return float(np.abs(image - rotated)[region].sum() / (2 * total)) if total > 0 else 0.0


def _segment(image: np.ndarray, sigma: float) -> np.ndarray:
    """Pixels above DETECTION_SIGMA after smoothing, in the component at (or nearest to) the centre."""
    smoothed = ndimage.gaussian_filter(image, SMOOTHING_PX)
    smoothed_sigma = sigma / (2 * np.sqrt(np.pi) * SMOOTHING_PX)  # white noise through the Gaussian kernel
    labels, count = ndimage.label(smoothed > DETECTION_SIGMA * smoothed_sigma)
    if count == 0:
        return np.zeros(image.shape, bool)
    size = image.shape[0]
    centre = labels[size // 2, size // 2]
    if centre == 0:
        y, x = np.nonzero(labels)
        nearest = np.argmin((y - size / 2) ** 2 + (x - size / 2) ** 2)
        centre = labels[y[nearest], x[nearest]]
    return labels == centre


def baseline_estimates(pixels: np.ndarray) -> BaselineEstimates:
    """Baseline inclinations and reject scores of flux tiles.

    Parameters
    ----------
    pixels : ndarray, shape (n, 3, size, size)
        Fluxes in g, r, i (NaN = missing, counted as sky); the bands are summed.

    Returns
    -------
    BaselineEstimates
    """
    pixels = np.asarray(pixels, dtype=np.float32)
    n = len(pixels)
    inclination, axis_ratio, score = np.zeros(n), np.ones(n), np.zeros(n)
    if n == 0:
        return BaselineEstimates(inclination, axis_ratio, score)
    sigma = np.sqrt((sky_sigma(pixels) ** 2).sum(axis=1))
    size = pixels.shape[-1]
    for k in range(n):
        image = np.nan_to_num(pixels[k]).sum(axis=0).astype(np.float64)
        mask = _segment(image, sigma[k])
        axis_ratio[k] = moments_axis_ratio(image, mask)
        inclination[k] = hubble_inclination(axis_ratio[k])
        border = np.concatenate([mask[0], mask[-1], mask[:, 0], mask[:, -1]]).mean()
        snr = np.clip(image[mask], 0, None).sum() / (sigma[k] * np.sqrt(max(mask.sum(), 1)))
        centre = pixels[k, :, size // 4 : size - size // 4, size // 4 : size - size // 4]
        score[k] = (
            rotational_asymmetry(image, mask)
            + 2 * max(0.0, axis_ratio[k] - FACE_ON_AXIS_RATIO)
            + 4 * border
            + max(0.0, 1 - snr / SNR_REFERENCE)
            + np.isnan(centre).any(axis=0).mean()
        )
    return BaselineEstimates(inclination, axis_ratio, score)
