"""The paper's per-channel normalisation of a crop, with point sources masked in the 8 um statistics.

Per channel: subtract the minimum, clip at mean + 3 sigma, divide by that clip level, so every channel
lies in [0, 1]. At 8 um the mean and sigma are computed without the pixels of point sources found by a
star finder (local maxima of the white top-hat standing 5 robust noise sigma above zero), so a field full
of stars is not darkened by them. NaN policy: missing pixels are ignored by the statistics and set to
0 (the channel minimum) after normalisation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from nightshift.bubbles.config import IMAGE_SIZE
from nightshift.bubbles.windows import resize_crop

__all__ = ["star_mask", "normalise_channel", "preprocess_crop", "preprocess_batch"]


def star_mask(image: np.ndarray, *, fwhm_px: float = 2.0, threshold_sigma: float = 5.0) -> np.ndarray:
    """Boolean mask of the pixels within 1.5 FWHM of point sources.

    Parameters
    ----------
    image : ndarray
        (H, W) intensities; NaN allowed.
    fwhm_px : float
        PSF FWHM, in pixels.
    threshold_sigma : float
        Detection threshold above the local background, in robust (MAD) standard deviations.
    """
    finite = np.isfinite(image)
    if not finite.any():
        return np.zeros(image.shape, bool)
    filled = np.where(finite, image, np.nanmedian(image))
    # white top-hat: what an opening wider than the PSF removes is compact (stars), not extended (shells, clouds)
    window = max(3, int(round(2 * fwhm_px)) | 1)
    residual = filled - ndimage.grey_opening(filled, size=(window, window))
    # pixel noise from neighbour differences (robust to the top-hat's skewed residuals and to smooth emission)
    steps = np.diff(filled, axis=1)
    sigma = 1.4826 * np.median(np.abs(steps - np.median(steps))) / np.sqrt(2.0)
    peaks = (residual == ndimage.maximum_filter(residual, size=3)) & (residual > threshold_sigma * max(sigma, 1e-12))
    reach = max(1, int(np.ceil(1.5 * fwhm_px)))
    return ndimage.binary_dilation(peaks & finite, structure=np.ones((2 * reach + 1, 2 * reach + 1), bool))


def normalise_channel(image: np.ndarray, *, exclude: np.ndarray | None = None) -> np.ndarray:
    """Subtract the minimum, clip at mean + 3 sigma, divide: values in [0, 1], NaN set to 0.

    Parameters
    ----------
    image : ndarray
        (H, W) intensities.
    exclude : ndarray of bool, optional
        Pixels left out of the mean and sigma (point sources).
    """
    finite = np.isfinite(image)
    if not finite.any():
        return np.zeros(image.shape, np.float32)
    shifted = image - np.min(image[finite])
    use = finite if exclude is None or not (finite & ~exclude).any() else finite & ~exclude
    level = float(shifted[use].mean() + 3.0 * shifted[use].std())
    scaled = np.clip(shifted, 0.0, level) / level if level > 0 else np.zeros_like(shifted)
    return np.where(finite, scaled, 0.0).astype(np.float32)


def preprocess_crop(pixels: np.ndarray, *, fwhm8_px: float = 2.0, output_px: int = IMAGE_SIZE) -> np.ndarray:
    """A (2, n, n) crop (8 um, 24 um) resized to ``output_px`` and normalised per channel, float32 in [0, 1].

    ``fwhm8_px`` is the 8 um PSF FWHM in pixels of the resized crop (for the star finder).
    """
    if pixels.ndim != 3 or pixels.shape[0] != 2:
        raise ValueError(f"crop pixels of shape {pixels.shape}: expected (2, height, width) = (8 um, 24 um)")
    resized = resize_crop(pixels, output_px)
    stars = star_mask(resized[0], fwhm_px=fwhm8_px)
    return np.stack([normalise_channel(resized[0], exclude=stars), normalise_channel(resized[1])])


def preprocess_batch(crops: Sequence[np.ndarray], *, fwhm8_px: float | Sequence[float] = 2.0) -> np.ndarray:
    """Stack of :func:`preprocess_crop` results, shape (n, 2, 300, 300); empty input gives shape (0, 2, 300, 300).

    ``fwhm8_px`` is one FWHM for all crops or one per crop, in pixels of the resized crops.
    """
    if not crops:
        return np.zeros((0, 2, IMAGE_SIZE, IMAGE_SIZE), np.float32)
    fwhms = [float(fwhm8_px)] * len(crops) if np.isscalar(fwhm8_px) else list(fwhm8_px)
    if len(fwhms) != len(crops):
        raise ValueError(f"{len(fwhms)} FWHM values for {len(crops)} crops: expected one or one per crop")
    return np.stack([preprocess_crop(c, fwhm8_px=f) for c, f in zip(crops, fwhms)])
