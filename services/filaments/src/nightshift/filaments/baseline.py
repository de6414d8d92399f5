"""The classical baseline: a multi-scale Hessian ridge filter of log N(H2), thresholded.

The "classical extraction" the seed compares with (Schisano+2014/2020) finds filaments from the
eigenvalues of the Hessian of the column-density map; this baseline uses the Sato multi-scale
ridge measure (bright ridges, scales ``sigmas_px``) on log10 N(H2), scaled per map to [0, 1]
by its 99.5th percentile. Its threshold is calibrated on training data, like the model's training.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ridge_score"]


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
