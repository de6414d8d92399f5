"""From N(H2) maps to network inputs: per-patch normalisation, patch sampling, augmentation, blending.

NaN policy (one for training and inference): missing pixels (NaN, or non-positive N(H2) under the
log scalings) are ignored by the normalisation, enter the network as 0, never count in the loss or
the metrics, and get probability 0 in inferred maps.
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["SCALINGS", "HIGHPASS_SIGMA_PX", "HIGHPASS_PERCENTILES", "normalise_patches", "sample_patch_corners", "cut_patches", "augment", "patch_starts", "blend_weights"]


SCALINGS = ("log-minmax", "minmax", "log-highpass")
"""Per-patch normalisations (``FilamentsConfig.scaling``)."""

HIGHPASS_SIGMA_PX = 8.0
"""Gaussian scale of the local background ``log-highpass`` subtracts: twice a filament's observed width
(3-4 px), so filaments stay and a bright clump's broad wings or a brighter sky go."""

HIGHPASS_PERCENTILES = (1.0, 99.0)
"""Percentiles of a patch's residual mapped to 0 and 1 by ``log-highpass`` (clipped beyond), so one
compact bright core does not squeeze the faint filaments into a sliver of the range as min/max does."""


def normalise_patches(column_density: np.ndarray, scaling: str = "log-minmax") -> tuple[np.ndarray, np.ndarray]:
    """Scale each patch to [0, 1] on its own.

    Parameters
    ----------
    column_density : numpy.ndarray
        (..., H, W) N(H2) in cm^-2, NaN where missing.
    scaling : {"log-minmax", "minmax", "log-highpass"}
        Min/max of log10 N(H2) or of N(H2) itself (the seed's); or ``log-highpass``: log10 N(H2) minus
        its local background (a Gaussian mean of scale :data:`HIGHPASS_SIGMA_PX` over the pixels with
        data), its :data:`HIGHPASS_PERCENTILES` mapped to [0, 1] and clipped. A sky brighter by any
        factor, or by a factor that varies slowly across the patch, gives (nearly) the same inputs.

    Returns
    -------
    normalised : numpy.ndarray
        float32 (..., H, W) in [0, 1]; missing pixels and constant patches are 0.
    valid : numpy.ndarray
        bool (..., H, W): pixels with data.
    """
    if scaling not in SCALINGS:
        raise ValueError(f"scaling={scaling!r}: expected one of {SCALINGS}")
    values = np.asarray(column_density, dtype=np.float64)
    if scaling == "minmax":
        valid = np.isfinite(values)
    else:
        valid = np.isfinite(values) & (values > 0)
        values = np.log10(np.where(valid, values, 1.0))
    if values.size == 0:
        return values.astype(np.float32), valid
    if scaling == "log-highpass":
        values = values - _local_mean(values, valid, HIGHPASS_SIGMA_PX)
        low, high = _percentiles(values, valid, HIGHPASS_PERCENTILES)
    else:
        low = np.min(np.where(valid, values, np.inf), axis=(-2, -1), keepdims=True)
        high = np.max(np.where(valid, values, -np.inf), axis=(-2, -1), keepdims=True)
    span = high - low
    usable = np.isfinite(span) & (span > 0)
    scaled = np.where(usable, (values - np.where(usable, low, 0)) / np.where(usable, span, 1), 0.0)
    return np.where(valid, np.clip(scaled, 0.0, 1.0), 0.0).astype(np.float32), valid


def _local_mean(values: np.ndarray, valid: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian mean over each patch's pixels with data (normalised convolution, reflected at the edges)."""
    from scipy import ndimage

    sigma = (0.0,) * (values.ndim - 2) + (sigma_px, sigma_px)
    total = ndimage.gaussian_filter(np.where(valid, values, 0.0), sigma, mode="reflect")
    weight = ndimage.gaussian_filter(valid.astype(np.float64), sigma, mode="reflect")
    return np.where(weight > 1e-6, total / np.maximum(weight, 1e-6), 0.0)


def _percentiles(values: np.ndarray, valid: np.ndarray, percentiles: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Each patch's two percentiles over its pixels with data, shaped (..., 1, 1); NaN for a patch without data."""
    flat = np.where(valid, values, np.nan).reshape(*values.shape[:-2], -1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN patches: NaN, then scaled to 0
        low, high = np.nanpercentile(flat, percentiles, axis=-1)
    return low[..., None, None], high[..., None, None]


def sample_patch_corners(
    mask: np.ndarray,
    usable: np.ndarray,
    rng: np.random.Generator,
    *,
    count: int,
    patch_px: int,
    min_mask_fraction: float,
    background_fraction: float,
    max_missing_fraction: float,
) -> np.ndarray:
    """Random top-left corners of training patches, as the seed draws them.

    The seed cuts patches "at random positions around each filament's region of interest" that
    "contain at least 20% of the mask": a share ``1 - background_fraction`` of the patches is drawn
    by picking a filament (a connected region of the mask) at random, then a random window holding
    at least ``min_mask_fraction`` of that filament's pixels. The rest are drawn anywhere, so the
    network also sees filament-free sky. Every patch holds at most ``max_missing_fraction`` missing
    pixels; fewer than ``count`` corners come back when no place qualifies.

    Parameters
    ----------
    mask, usable : numpy.ndarray
        bool (H, W) filament mask and pixels with data.
    rng : numpy.random.Generator
        Random source.
    count, patch_px : int
        Patches wanted and their side, in pixels.
    min_mask_fraction, background_fraction, max_missing_fraction : float
        The conditions above.

    Returns
    -------
    numpy.ndarray
        int (n, 2) corners (row, column), n <= count.
    """
    from scipy import ndimage

    height, width = mask.shape
    if count <= 0 or height < patch_px or width < patch_px:
        return np.zeros((0, 2), int)

    def window_sums(image: np.ndarray) -> np.ndarray:
        # Summed-area table: every candidate window's sum in O(1).
        table = np.pad(np.cumsum(np.cumsum(image.astype(np.int64), 0), 1), ((1, 0), (1, 0)))
        p = patch_px
        return table[p:, p:] - table[:-p, p:] - table[p:, :-p] + table[:-p, :-p]

    allowed = window_sums(~usable) <= max_missing_fraction * patch_px * patch_px
    labels, filaments = ndimage.label(mask, structure=np.ones((3, 3)))
    wanted_filament = int(round(count * (1 - background_fraction))) if filaments else 0
    corners = []
    places: dict[int, np.ndarray] = {}
    for label in rng.integers(1, filaments + 1, wanted_filament) if filaments else []:
        if label not in places:
            region = labels == label
            places[label] = np.argwhere(allowed & (window_sums(region) >= min_mask_fraction * region.sum()))
        if len(places[label]):
            corners.append(places[label][rng.integers(len(places[label]))])
    anywhere = np.argwhere(allowed)
    if len(anywhere):
        corners.extend(anywhere[rng.integers(0, len(anywhere), count - wanted_filament)])
    return np.array(corners, int).reshape(-1, 2)


def cut_patches(image: np.ndarray, corners: np.ndarray, patch_px: int) -> np.ndarray:
    """The (n, patch_px, patch_px) patches of a (H, W) image at the given top-left corners."""
    return np.stack([image[r : r + patch_px, c : c + patch_px] for r, c in corners]) if len(corners) else \
        np.zeros((0, patch_px, patch_px), image.dtype)


def augment(
    inputs: np.ndarray, targets: np.ndarray, weights: np.ndarray, rng: np.random.Generator, noise_sigma: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The seed's augmentation: random flips and 90-degree rotations (the same for input, target and
    weight), then Gaussian noise of a random level up to ``noise_sigma`` on the normalised input.

    Parameters
    ----------
    inputs, targets, weights : numpy.ndarray
        (n, H, W) normalised patches, masks and loss weights (H == W).
    rng : numpy.random.Generator
        Random source.
    noise_sigma : float
        Largest noise standard deviation, in normalised units.
    """
    out = [np.empty_like(a) for a in (inputs, targets, weights)]
    for i in range(len(inputs)):
        turns, flip = rng.integers(0, 4), rng.integers(0, 2)
        for source, target in zip((inputs, targets, weights), out):
            patch = np.rot90(source[i], turns)
            target[i] = patch[:, ::-1] if flip else patch
    sigma = rng.uniform(0, noise_sigma, (len(inputs), 1, 1))
    noisy = out[0] + (sigma * rng.normal(size=inputs.shape)).astype(inputs.dtype)
    return np.where(out[2] > 0, noisy, 0).astype(inputs.dtype), out[1], out[2]


def patch_starts(length: int, patch_px: int, stride_px: int) -> list[int]:
    """Starts of overlapping windows covering ``[0, length)``, the last flush with the end.

    ``length`` must be at least ``patch_px`` (pad smaller maps first).
    """
    if length < patch_px:
        raise ValueError(f"length {length} is shorter than the patch ({patch_px} pixels): pad first")
    starts = list(range(0, length - patch_px + 1, stride_px))
    if starts[-1] != length - patch_px:
        starts.append(length - patch_px)
    return starts


def blend_weights(patch_px: int) -> np.ndarray:
    """(patch_px, patch_px) weights for blending overlapping patches: a 2D Hann-like taper, highest
    in the centre where the network sees the most context, never zero so every pixel is covered."""
    ramp = np.sin(np.pi * (np.arange(patch_px) + 0.5) / patch_px) ** 2
    return (np.outer(ramp, ramp) + 1e-3).astype(np.float32)
