"""The classical, non-learning baseline: thresholded residuals from a focal-plane background fit.

Ghosts and scattered light add diffuse light over tens to hundreds of pixels, often across many
CCDs; stars and noise do not. So the sky is modelled across the whole focal plane at once, as a
large-scale background estimator does: a smooth 2-D polynomial of degree ``degree`` in (x, y) (the
vignetting) plus one offset per CCD, fitted jointly by least squares on the star-masked live pixels
(stars clipped at 3 sigma, iterated). The CCD offsets carry a Gaussian prior of ``ccd_offset_sigma``
display levels (a ridge penalty): a free offset per CCD would swallow any ghost larger than a CCD, as
per-CCD median subtraction does; no offsets cannot follow real chip-to-chip levels. The residual is
clipped at 3 sigma, smoothed on the CCDs only (normalised convolution with a Gaussian of
``smoothing_px``, which also bridges the gaps), and the connected regions above ``threshold_sigma``
times the smoothed map's robust scatter are the instances; a region's class follows from its shape:
elongated (second-moment axis ratio above ``rays_elongation``) -> ``rays``, larger than
``faint_area_px`` -> ``faint``, else ``bright``; its score grows with its peak significance. Every
parameter is chosen on training images by :func:`tune_baseline`; scored exactly like the network
(:mod:`nightshift.ghosts.evaluate`).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from nightshift.ghosts.artefacts import Artefact
from nightshift.ghosts.config import CLASSES
from nightshift.ghosts.focalplane import ccd_map

__all__ = ["ResidualBaseline", "BaselineGrid", "significance_maps", "tune_baseline"]

_CLIP_SIGMA = 3.0
"""Pixels further than this from the background (in pixel-noise units) are stars or cosmetics: left out of the fit."""


@dataclasses.dataclass(frozen=True)
class ResidualBaseline:
    """Artefact finder by thresholded, smoothed residuals from a joint focal-plane background fit.

    The defaults are the values :func:`tune_baseline` chose on 48 simulated training exposures
    (data seed 7, the training index range); the real figures retune them on each fold's training images.

    Parameters
    ----------
    degree : int
        Degree of the smooth 2-D polynomial background over the focal plane.
    ccd_offset_sigma : float
        Prior scatter of the per-CCD offsets in display levels (0: no offsets; ``inf``: free offsets).
    smoothing_px : float
        Gaussian sigma of the residual's smoothing, in pixels.
    threshold_sigma : float
        Detection threshold in units of the smoothed map's robust scatter.
    min_area_px : int
        Smallest region kept, in pixels.
    faint_area_px : int
        Regions larger than this (and not elongated) are called ``faint``.
    rays_elongation : float
        Regions with a second-moment axis ratio above this are called ``rays``.
    score_threshold : float
        Confidence from which an instance counts for the image- and CCD-level decisions.
    """

    degree: int = 4
    ccd_offset_sigma: float = 1.0
    smoothing_px: float = 4.0
    threshold_sigma: float = 3.0
    min_area_px: int = 150
    faint_area_px: int = 12000
    rays_elongation: float = 2.0
    score_threshold: float = 0.25

    def background(self, gray: np.ndarray, live: np.ndarray) -> tuple[np.ndarray, float]:
        """(background model (H, W), pixel noise) of a grey focal-plane image, fitted on the live pixels."""
        rows, cols = np.nonzero(live)
        values = gray[rows, cols]
        _, chip = np.unique(ccd_map(gray.shape[0])[rows, cols], return_inverse=True)
        smooth = _monomials(rows, cols, gray.shape[0], self.degree)
        used = (rows % 2 == 0) & (cols % 2 == 0)  # a quarter of the pixels fixes ~90 coefficients as well
        noise = 1.4826 * float(np.median(np.abs(values - np.median(values)))) or 1.0
        for _ in range(3):
            coefficients, offsets = self._solve(smooth[used], chip[used], values[used], chip.max() + 1, noise)
            residual = values - smooth @ coefficients - offsets[chip]
            used &= np.abs(residual) < _CLIP_SIGMA * noise
            noise = 1.4826 * float(np.median(np.abs(residual[used]))) or 1.0
        model = np.zeros_like(gray)
        model[rows, cols] = values - residual
        return model, noise

    def _solve(self, smooth: np.ndarray, chip: np.ndarray, values: np.ndarray, chips: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
        """Polynomial coefficients and CCD offsets by ridge least squares (normal equations; the offsets' block by bincount)."""
        if self.ccd_offset_sigma <= 0:
            return np.linalg.lstsq(smooth, values, rcond=None)[0], np.zeros(chips)
        terms = smooth.shape[1]
        normal = np.zeros((terms + chips, terms + chips))
        normal[:terms, :terms] = smooth.T @ smooth
        cross = np.stack([np.bincount(chip, weights=column, minlength=chips) for column in smooth.T], axis=1)
        normal[terms:, :terms], normal[:terms, terms:] = cross, cross.T
        penalty = (noise / self.ccd_offset_sigma) ** 2  # Gaussian prior on each offset, in the pixels' noise units
        normal[terms:, terms:] = np.diag(np.bincount(chip, minlength=chips) + penalty)
        rhs = np.concatenate([smooth.T @ values, np.bincount(chip, weights=values, minlength=chips)])
        solution = np.linalg.lstsq(normal, rhs, rcond=None)[0]
        return solution[:terms], solution[terms:]

    def residual_significance(self, pixels: np.ndarray) -> np.ndarray:
        """Smoothed residual map in units of its robust scatter, shape (H, W); 0 off the CCDs.

        Parameters
        ----------
        pixels : numpy.ndarray
            float32 (3, H, W) tile pixels 0..255 (NaN: missing) of a square focal-plane image.
        """
        gray = np.nanmean(np.asarray(pixels, dtype=np.float64), axis=0)
        live = (ccd_map(gray.shape[0]) > 0) & np.isfinite(gray)
        if live.sum() <= 100:
            return np.zeros_like(gray)
        model, noise = self.background(np.where(live, gray, 0.0), live)
        residual = np.clip((gray - model) / noise, -_CLIP_SIGMA, _CLIP_SIGMA) * live
        weight = ndimage.gaussian_filter(live.astype(float), self.smoothing_px)
        smooth = ndimage.gaussian_filter(np.nan_to_num(residual), self.smoothing_px) / np.maximum(weight, 1e-3)
        smooth[weight < 0.2] = 0.0
        scatter = 1.4826 * np.median(np.abs(smooth[live] - np.median(smooth[live]))) or 1.0
        return (smooth - np.median(smooth[live])) / scatter

    def regions(self, significance: np.ndarray) -> list[Artefact]:
        """The instances of a significance map (:meth:`residual_significance`), by decreasing score."""
        regions, _ = ndimage.label(significance > self.threshold_sigma)
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
            label = "rays" if elongation > self.rays_elongation else "faint" if area > self.faint_area_px else "bright"
            peak = float(significance[mask].max())
            found.append(Artefact(label=label, mask=mask, score=float(1.0 - np.exp(-(peak - self.threshold_sigma) / 3.0))))
        return sorted(found, key=lambda a: -a.score)

    def find(self, pixels: np.ndarray) -> list[Artefact]:
        """The artefacts of one image, by decreasing score (empty when nothing passes the threshold)."""
        return self.regions(self.residual_significance(pixels))


def _monomials(rows: np.ndarray, cols: np.ndarray, size: int, degree: int) -> np.ndarray:
    """x^i y^j for i + j <= degree at the given pixels, coordinates scaled to [-1, 1] (well conditioned)."""
    x, y = 2.0 * cols / (size - 1) - 1.0, 2.0 * rows / (size - 1) - 1.0
    return np.stack([x**i * y**j for i in range(degree + 1) for j in range(degree + 1 - i)], axis=1)


@dataclasses.dataclass(frozen=True)
class BaselineGrid:
    """The parameter values :func:`tune_baseline` tries."""

    degree: tuple[int, ...] = (2, 4, 6)
    ccd_offset_sigma: tuple[float, ...] = (0.0, 0.3, 1.0, float("inf"))
    smoothing_px: tuple[float, ...] = (4.0, 8.0)
    threshold_sigma: tuple[float, ...] = (2.0, 3.0, 4.0)
    faint_area_px: tuple[int, ...] = (3000, 6000, 12000)
    rays_elongation: tuple[float, ...] = (2.0, 2.5, 3.5)


FitKey = tuple[int, float, float]
"""(degree, ccd_offset_sigma, smoothing_px): the parameters a significance map depends on."""


def significance_maps(pixels: Sequence[np.ndarray], grid: BaselineGrid = BaselineGrid()) -> dict[FitKey, list[np.ndarray]]:
    """Every image's significance map for every background setting of the grid (float32; the slow part, done once)."""
    maps = {}
    for key in itertools.product(grid.degree, grid.ccd_offset_sigma, grid.smoothing_px):
        fit = ResidualBaseline(degree=key[0], ccd_offset_sigma=key[1], smoothing_px=key[2])
        maps[key] = [fit.residual_significance(p).astype(np.float32) for p in pixels]
    return maps


def tune_baseline(
    maps: dict[FitKey, list[np.ndarray]], truths: Sequence[Sequence[Artefact]], grid: BaselineGrid = BaselineGrid(),
) -> tuple[ResidualBaseline, dict[str, Any]]:
    """The baseline's parameters chosen on training images, as the network's are: (best baseline, search record).

    ``maps`` are the training images' :func:`significance_maps`. The objective is the mean of the
    per-class AP@0.5 (bright, faint, rays weigh the same; AP@0.5 of all types lets the most numerous
    class decide). Three steps, on those images only: the background and detection parameters
    (``degree``, ``ccd_offset_sigma``, ``smoothing_px``, ``threshold_sigma``) at the grid's middle
    class rule; then the class rule (``faint_area_px``, ``rays_elongation``); then ``score_threshold`` by the
    network's rule (best CCD-level F1, :func:`nightshift.ghosts.crossval.choose_threshold`).
    """
    from nightshift.ghosts.crossval import choose_threshold
    from nightshift.ghosts.evaluate import coco_scores

    def objective(candidate: ResidualBaseline, key: FitKey) -> dict[str, float]:
        scores = coco_scores(truths, [candidate.regions(m) for m in maps[key]])
        return {"ap50": scores["ap50"], "class_ap50": float(np.nanmean([scores[f"ap50_{c}"] for c in CLASSES]))}

    start = ResidualBaseline(faint_area_px=grid.faint_area_px[len(grid.faint_area_px) // 2],
                             rays_elongation=grid.rays_elongation[len(grid.rays_elongation) // 2])  # the class rule's middle
    best, best_key, best_value, trials = start, next(iter(maps)), -1.0, []
    for key, threshold in itertools.product(maps, grid.threshold_sigma):
        candidate = dataclasses.replace(best, degree=key[0], ccd_offset_sigma=key[1], smoothing_px=key[2], threshold_sigma=threshold)
        trials.append({**_parameters(candidate), **objective(candidate, key)})
        if trials[-1]["class_ap50"] > best_value:
            best, best_key, best_value = candidate, key, trials[-1]["class_ap50"]
    best_classes = best
    for faint_area, elongation in itertools.product(grid.faint_area_px, grid.rays_elongation):
        candidate = dataclasses.replace(best, faint_area_px=faint_area, rays_elongation=elongation)
        trials.append({**_parameters(candidate), **objective(candidate, best_key)})
        if trials[-1]["class_ap50"] > best_value:
            best_classes, best_value = candidate, trials[-1]["class_ap50"]
    predictions = [best_classes.regions(m) for m in maps[best_key]]
    tuned = dataclasses.replace(best_classes, score_threshold=choose_threshold(truths, predictions))
    chosen = next(t for t in reversed(trials) if t["class_ap50"] == best_value)
    return tuned, {"parameters": _parameters(tuned), "train_ap50": chosen["ap50"], "train_class_ap50": best_value,
                   "train_images": len(truths), "trials": trials}


def _parameters(baseline: ResidualBaseline) -> dict[str, Any]:
    return {k: (v if np.isfinite(v) else "inf") if isinstance(v, float) else v for k, v in dataclasses.asdict(baseline).items()}
