"""The classical, non-learning baseline: thresholded large-scale background residuals.

Ghosts and scattered light add diffuse light over tens to hundreds of pixels; stars and noise do not.
So: subtract each CCD's median level (removing per-CCD offsets and most of the vignetting), clip stars
at 3 sigma, smooth on the CCDs only (normalised convolution with a Gaussian of ``smoothing_px``, which
also bridges the gaps), and keep the connected regions above ``threshold_sigma`` times the smoothed
map's robust scatter. Each region is an instance; its class follows from its shape: elongated
regions (second-moment axis ratio above 2.5) are ``rays``, large ones (above ``faint_area_px``)
``faint``, the rest ``bright``; its score grows with its peak significance. Scored exactly like the
network (:mod:`nightshift.ghosts.evaluate`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

from nightshift.ghosts.artefacts import Artefact
from nightshift.ghosts.focalplane import ccd_map

__all__ = ["ResidualBaseline"]


@dataclasses.dataclass(frozen=True)
class ResidualBaseline:
    """Artefact finder by thresholded smoothed residuals.

    Parameters
    ----------
    smoothing_px : float
        Gaussian sigma of the smoothing, in pixels.
    threshold_sigma : float
        Detection threshold in units of the smoothed map's robust scatter.
    min_area_px : int
        Smallest region kept, in pixels.
    faint_area_px : int
        Regions larger than this (and not elongated) are called ``faint``.
    """

    smoothing_px: float = 6.0
    threshold_sigma: float = 3.0
    min_area_px: int = 150
    faint_area_px: int = 8000

    def residual_significance(self, pixels: np.ndarray) -> np.ndarray:
        """Smoothed residual map in units of its robust scatter, shape (H, W); 0 off the CCDs.

        Parameters
        ----------
        pixels : numpy.ndarray
            float32 (3, H, W) tile pixels 0..255 (NaN: missing) of a square focal-plane image.
        """
        gray = np.nanmean(np.asarray(pixels, dtype=np.float64), axis=0)
        chips = ccd_map(gray.shape[0])
        live = (chips > 0) & np.isfinite(gray)
        residual = np.zeros_like(gray)
        for number in np.unique(chips[live]):
            on = live & (chips == number)
            residual[on] = gray[on] - np.median(gray[on])
        if not live.any():
            return residual
        noise = 1.4826 * np.median(np.abs(residual[live])) or 1.0
        residual = np.clip(residual / noise, -3.0, 3.0) * live  # stars clipped
        weight = ndimage.gaussian_filter(live.astype(float), self.smoothing_px)
        smooth = ndimage.gaussian_filter(residual, self.smoothing_px) / np.maximum(weight, 1e-3)
        smooth[weight < 0.2] = 0.0
        scatter = 1.4826 * np.median(np.abs(smooth[live] - np.median(smooth[live]))) or 1.0
        return (smooth - np.median(smooth[live])) / scatter

    def find(self, pixels: np.ndarray) -> list[Artefact]:
        """The artefacts of one image, by decreasing score (empty when nothing passes the threshold)."""
        significance = self.residual_significance(pixels)
        regions, count = ndimage.label(significance > self.threshold_sigma)
        found = []
        for index, region in enumerate(ndimage.find_objects(regions), start=1):
            mask = np.zeros(significance.shape, bool)
            mask[region] = ndimage.binary_fill_holes(regions[region] == index)
            area = int(mask.sum())
            if area < self.min_area_px:
                continue
            rows, cols = np.nonzero(mask)
            eigenvalues = np.linalg.eigvalsh(np.cov(np.stack([rows, cols]).astype(float)))
            elongation = np.sqrt(eigenvalues[1] / max(eigenvalues[0], 1e-6))
            label = "rays" if elongation > 2.5 else "faint" if area > self.faint_area_px else "bright"
            peak = float(significance[mask].max())
            found.append(Artefact(label=label, mask=mask, score=float(1.0 - np.exp(-(peak - self.threshold_sigma) / 3.0))))
        return sorted(found, key=lambda a: -a.score)
