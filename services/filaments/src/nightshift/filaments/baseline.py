"""The classical baselines: a multi-scale Hessian ridge filter of log N(H2), and FilFinder.

The "classical extraction" the seed compares with (Schisano+2014/2020) finds filaments from the
eigenvalues of the Hessian of the column-density map; :func:`ridge_score` uses the Sato multi-scale
ridge measure (bright ridges, scales ``sigmas_px``) on log10 N(H2), scaled per map to [0, 1]
by its 99.5th percentile. Its threshold is calibrated on training data, like the model's training.

:func:`filfinder_score` runs the published filament finder FilFinder (Koch & Rosolowsky 2015,
``fil_finder.FilFinder2D``): arctan flattening, median smoothing, an adaptive (local mean)
threshold, a global intensity cut and a minimum region size give its filament mask. Its
parameters (:class:`FilFinderParameters`) are chosen on training data (``evaluate.calibrate_filfinder``
over :data:`FILFINDER_SEARCH`).
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np

__all__ = ["ridge_score", "FilFinderParameters", "FILFINDER_SEARCH", "filfinder_score"]


def ridge_score(column_density: np.ndarray, sigmas_px: tuple[float, ...] = (1.0, 1.5, 2.0, 3.0)) -> np.ndarray:
    """Multi-scale Hessian ridge strength of a map, in [0, 1].

    Parameters
    ----------
    column_density : numpy.ndarray
        (H, W) N(H2) in cm^-2, NaN where missing.
    sigmas_px : tuple of float
        Gaussian scales of the Hessian, in pixels.

    Returns
    -------
    numpy.ndarray
        float32 (H, W); 0 at missing pixels.
    """
    from skimage.filters import sato

    values = np.asarray(column_density, dtype=np.float64)
    if values.size == 0:
        return values.astype(np.float32)
    valid = np.isfinite(values) & (values > 0)
    if not valid.any():
        return np.zeros(values.shape, np.float32)
    logs = np.log10(np.where(valid, values, 1.0))
    # Missing pixels take the map's median so they make no ridge of their own.
    logs = np.where(valid, logs, np.median(logs[valid]))
    response = sato(logs, sigmas=sigmas_px, black_ridges=False, mode="reflect")
    scale = np.percentile(response[valid], 99.5)
    score = np.clip(response / scale, 0, 1) if scale > 0 else np.zeros_like(response)
    return np.where(valid, score, 0).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class FilFinderParameters:
    """FilFinder's segmentation parameters, in units of the map and of its beam.

    Parameters
    ----------
    flatten_percentile : float
        Percentile of the map's N(H2) that normalises FilFinder's arctan flattening (``flatten_percent``).
    global_percentile : float
        Percentile of the map's N(H2) below which no pixel is filament (``glob_thresh``).
    smooth_beams : float
        Median smoothing size before the adaptive threshold, in beam FWHMs (``smooth_size``).
    adaptive_beams : float
        Side of the adaptive threshold's local-mean patch, in beam FWHMs (``adapt_thresh``).
    min_area_beams : float
        Smallest region kept, in beam areas ``pi FWHM**2 / (4 ln 2)`` (``size_thresh``).
    """

    flatten_percentile: float = 95.0
    global_percentile: float = 80.0
    smooth_beams: float = 0.5
    adaptive_beams: float = 4.0
    min_area_beams: float = 3.0


FILFINDER_SEARCH: dict[str, tuple[float, ...]] = {
    "flatten_percentile": (90.0, 95.0, 99.0),
    "global_percentile": (50.0, 70.0, 80.0, 88.0, 94.0),
    "smooth_beams": (0.25, 0.5, 1.0),
    "adaptive_beams": (2.0, 4.0, 8.0),
    "min_area_beams": (1.0, 3.0, 10.0),
}
"""The values each :class:`FilFinderParameters` field may take when chosen on training data; they span
FilFinder's defaults for a 0.1 pc filament resolved by a few beams (adaptive patch twice its width,
smoothing half of it)."""

# Reflected sky on every side, so the adaptive threshold sees sky beyond the map's edge as inside it.
_PAD_PX = 24
# Then a frame of the map's faintest value, so no region touches the array's edge: FilFinder 1.8's
# recombine_skeletons indexes past the edge when one does.
_FRAME_PX = 2


def filfinder_score(column_density: np.ndarray, parameters: FilFinderParameters, *, beam_fwhm_px: float) -> np.ndarray:
    """FilFinder's filament mask of a map, as a score: its mask is ``score >= 0.5``.

    Parameters
    ----------
    column_density : numpy.ndarray
        (H, W) N(H2) in cm^-2, NaN where missing.
    parameters : FilFinderParameters
        The segmentation parameters.
    beam_fwhm_px : float
        FWHM of the map's beam, in pixels.

    Returns
    -------
    numpy.ndarray
        float32 (H, W): 0 outside FilFinder's mask and at missing pixels; inside the mask,
        ``0.5 + arctan(N / N_flat) / pi`` in (0.5, 1), FilFinder's flattened intensity rescaled, which
        orders the mask's pixels for the precision-recall curve (FilFinder itself only gives the mask).
    """
    import astropy.units as u

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its import warns of astropy's deprecated test runner
        from fil_finder import FilFinder2D

    values = np.asarray(column_density, dtype=np.float64)
    valid = np.isfinite(values) & (values > 0)
    if values.size == 0 or not valid.any():
        return np.zeros(values.shape, np.float32)
    # Missing pixels take the map's median, as for the ridge filter: no structure of their own.
    filled = np.where(valid, values, np.median(values[valid]))
    padded = np.pad(filled, _PAD_PX, mode="reflect")
    padded[:_FRAME_PX], padded[-_FRAME_PX:] = filled.min(), filled.min()
    padded[:, :_FRAME_PX], padded[:, -_FRAME_PX:] = filled.min(), filled.min()
    beam_area_px2 = np.pi * beam_fwhm_px**2 / (4 * np.log(2))
    # A pool is only used by FilFinder's skeleton analysis, which the mask does not need.
    finder = FilFinder2D(padded, beamwidth=beam_fwhm_px * u.pix, pool=_NoPool())
    finder.preprocess_image(flatten_percent=parameters.flatten_percentile)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. "patch larger than 40 pixels, regridding disabled"
        finder.create_mask(
            glob_thresh=np.percentile(values[valid], parameters.global_percentile),
            smooth_size=parameters.smooth_beams * beam_fwhm_px * u.pix,
            adapt_thresh=parameters.adaptive_beams * beam_fwhm_px * u.pix,
            size_thresh=parameters.min_area_beams * beam_area_px2 * u.pix**2,
            # Its border masking erodes 15 px from the map's edges; missing pixels are already filled.
            border_masking=False,
        )
    inside = (slice(_PAD_PX, _PAD_PX + values.shape[0]), slice(_PAD_PX, _PAD_PX + values.shape[1]))
    mask = finder.mask[inside].astype(bool) & valid
    flattened = np.asarray(finder.flat_img / finder.flatten_threshold)[inside]  # arctan(N / N_flat), radians
    return np.where(mask, 0.5 + flattened / np.pi, 0).astype(np.float32)


class _NoPool:
    """Stands in for FilFinder's worker pool, which would otherwise open process pipes per call."""
