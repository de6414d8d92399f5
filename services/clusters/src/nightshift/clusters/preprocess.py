"""Preprocessing: the missing-pixel policy, the seed's robust scaling and augmentation.

NaN policy: a missing (NaN) pixel is replaced by the median of its band's finite pixels in the
same tile (0 when the band has none), and the model's probability there is set to 0, so no
detection is ever made on missing data.

Scaling (the seed's): ``arcsinh(x / mad_std(x))`` per band, where ``mad_std`` is astropy's
robust standard deviation over every pixel of the training split (of the median-subtracted tiles
when the model subtracts each tile's band medians first, ``subtract_tile_median``). The scales are fitted once on
the training split and stored inside the model (:class:`~nightshift.clusters.model.ArcsinhMadScaling`)
so a served tile, which has no split around it, is scaled exactly as in training.
"""

from __future__ import annotations

import numpy as np
from astropy.stats import mad_std

__all__ = ["fill_missing", "subtract_tile_medians", "robust_scales", "arcsinh_scale", "channels_last", "augment"]

_MIN_SCALE = 1e-12


def fill_missing(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Replace NaN by each tile's band median.

    Parameters
    ----------
    pixels : ndarray
        Shape (n, bands, H, W), float.

    Returns
    -------
    filled : ndarray
        Same shape, float32, no NaN.
    valid : ndarray
        Shape (n, H, W), bool: every band finite at that pixel.
    """
    pixels = np.asarray(pixels, dtype=np.float32)
    if pixels.ndim != 4:
        raise ValueError(f"pixels shape {pixels.shape}: expected (n, bands, height, width)")
    missing = ~np.isfinite(pixels)
    valid = ~missing.any(axis=1)
    if not missing.any():
        return pixels.copy(), valid
    flat = np.where(missing, np.nan, pixels).reshape(*pixels.shape[:2], -1)
    with np.errstate(all="ignore"):
        all_missing = missing.reshape(*pixels.shape[:2], -1).all(axis=-1)
        medians = np.where(all_missing, 0.0, np.nanmedian(np.where(all_missing[..., None], 0.0, flat), axis=-1))
    return np.where(missing, medians[..., None, None], pixels).astype(np.float32), valid


def subtract_tile_medians(pixels: np.ndarray) -> np.ndarray:
    """(n, bands, H, W) pixels minus each tile's band median (NaN ignored); what a model with ``subtract_tile_median`` sees."""
    pixels = np.asarray(pixels, dtype=np.float32)
    with np.errstate(all="ignore"):
        medians = np.nanmedian(pixels.reshape(*pixels.shape[:2], -1), axis=-1)
    return pixels - np.nan_to_num(medians)[..., None, None]


def robust_scales(pixels: np.ndarray) -> np.ndarray:
    """Per-band ``mad_std`` over all tiles and pixels of a split, shape (bands,), each band's unit.

    NaN pixels are ignored; a band with no spread gets a tiny positive scale.
    """
    pixels = np.asarray(pixels)
    if pixels.ndim != 4 or len(pixels) == 0:
        raise ValueError(f"pixels shape {pixels.shape}: expected a non-empty (n, bands, height, width)")
    per_band = np.moveaxis(pixels, 1, 0).reshape(pixels.shape[1], -1)
    scales = np.array([mad_std(band[np.isfinite(band)]) if np.isfinite(band).any() else 0.0 for band in per_band])
    return np.maximum(np.nan_to_num(scales), _MIN_SCALE)


def arcsinh_scale(pixels: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """``arcsinh(x / scale_b)`` of (n, bands, H, W) pixels; what the model's first layer computes."""
    return np.arcsinh(np.asarray(pixels, dtype=np.float64) / np.asarray(scales)[None, :, None, None])


def channels_last(pixels: np.ndarray) -> np.ndarray:
    """(n, bands, H, W) -> (n, H, W, bands), float32, the network's input layout."""
    return np.ascontiguousarray(np.moveaxis(np.asarray(pixels, dtype=np.float32), 1, -1))


def augment(images: np.ndarray, masks: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random flips and 90-degree rotations, the same for each image and its mask.

    Parameters
    ----------
    images : ndarray
        Shape (n, H, W, bands).
    masks : ndarray
        Shape (n, H, W, ...).
    rng : numpy.random.Generator
        Draws one of the 8 symmetries of the square per image.
    """
    images, masks = images.copy(), masks.copy()
    for i, (turns, flip) in enumerate(zip(rng.integers(0, 4, len(images)), rng.integers(0, 2, len(images)))):
        image, mask = np.rot90(images[i], turns, axes=(0, 1)), np.rot90(masks[i], turns, axes=(0, 1))
        if flip:
            image, mask = image[:, ::-1], mask[:, ::-1]
        images[i], masks[i] = image, mask
    return images, masks
