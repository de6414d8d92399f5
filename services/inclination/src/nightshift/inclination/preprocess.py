"""From g, r, i flux tiles to the network's input, and the seed's aspect-preserving augmentations.

Flux tiles (n, 3, H, W) in bands g, r, i become asinh-stretched bands in [0, 1] (IncliNET shows its
users asinh-rescaled g, r, i images), from which each network input (H, W, 3) is a *view*: the gri
colour composite (channels i, r, g as red, green, blue), one band as grayscale in all three channels,
or that grayscale inverted (black on white), in one of four orientations (identity, the two flips,
rotation by 180 degrees). None of them changes a galaxy's aspect ratio.

NaN policy: missing pixels are set to the sky level (0 flux) before stretching; their absence of
signal is visible to the reject classifier, which is trained on tiles with missing bands of data.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from nightshift.inclination.config import ROTATIONS

__all__ = [
    "ASINH_SOFTENING_SIGMA", "TEST_TIME_VIEWS", "sky_sigma", "stretch", "view", "test_time_copies", "augment", "resample",
]

ASINH_SOFTENING_SIGMA = 3.0     # asinh turns from linear to logarithmic at this many sky sigmas
WHITE_PERCENTILE = 99.5         # of the central half of the tile: the level stretched to 1
BORDER_FRACTION = 1 / 8         # the tile's outer frame that estimates the sky noise

APPEARANCES = ("colour", "gray-g", "gray-r", "gray-i", "inverted-g", "inverted-r", "inverted-i")
ORIENTATIONS = ("identity", "flip-lr", "flip-ud", "rotate-180")
# Test-time views, in order of use: colour and the r and i grays first (the network measures those
# best; the g band is the noisiest and inverted views the hardest), then the other grays and inversions.
TEST_TIME_VIEWS: tuple[tuple[str, str], ...] = (
    ("colour", "identity"), ("gray-r", "flip-lr"), ("colour", "rotate-180"), ("gray-i", "flip-ud"),
    ("colour", "flip-lr"), ("gray-r", "rotate-180"), ("colour", "flip-ud"), ("gray-i", "rotate-180"),
    ("gray-g", "identity"), ("inverted-i", "flip-ud"), ("inverted-r", "rotate-180"), ("inverted-g", "identity"),
    ("gray-g", "flip-ud"), ("inverted-i", "flip-lr"), ("inverted-r", "flip-lr"), ("inverted-g", "rotate-180"),
)

# Training augmentation ranges (IncliNET's): scale, translation (fraction of the tile), blur sigma
# (pixels), additive noise (stretched units), gamma, multiplicative and additive level changes.
SCALE, SHIFT_FRACTION, BLUR_SIGMA_PX, NOISE, GAMMA, GAIN, OFFSET = (0.8, 1.2), 0.15, (0.0, 1.0), (0.0, 0.05), (0.7, 1.4), (0.8, 1.2), (-0.05, 0.05)


def _check_tiles(pixels: np.ndarray) -> np.ndarray:
    pixels = np.asarray(pixels, dtype=np.float32)
    if pixels.ndim != 4 or pixels.shape[1] != 3 or pixels.shape[2] != pixels.shape[3]:
        raise ValueError(f"pixels of shape {pixels.shape}: expected (n, 3 bands g/r/i, size, size)")
    return pixels


def sky_sigma(pixels: np.ndarray) -> np.ndarray:
    """Robust sky noise per tile and band from the tile's outer frame.

    Parameters
    ----------
    pixels : ndarray, shape (n, 3, size, size)
        Fluxes; NaN pixels are ignored.

    Returns
    -------
    ndarray, shape (n, 3)
        1.4826 x the median absolute deviation of the frame's pixels, in flux units; a tiny positive
        floor where the frame is constant or missing.
    """
    pixels = _check_tiles(pixels)
    size = pixels.shape[-1]
    width = max(2, int(size * BORDER_FRACTION))
    frame = np.ones((size, size), bool)
    frame[width:-width, width:-width] = False
    values = pixels[..., frame]
    median = np.nanmedian(values, axis=-1, keepdims=True) if values.size else values
    with np.errstate(all="ignore"):
        sigma = 1.4826 * np.nanmedian(np.abs(values - median), axis=-1)
    scale = np.nanmax(np.abs(np.nan_to_num(pixels)), axis=(-1, -2)) if pixels.size else np.zeros(pixels.shape[:2])
    return np.where(np.isfinite(sigma) & (sigma > 0), sigma, np.maximum(scale, 1e-12) * 1e-6)


def stretch(pixels: np.ndarray) -> np.ndarray:
    """asinh-stretch each tile and band to [0, 1].

    ``asinh(f / (3 sigma_sky))`` divided by its 99.5th percentile in the tile's central half, clipped
    to [0, 1]; NaN pixels count as sky (0 flux).

    Parameters
    ----------
    pixels : ndarray, shape (n, 3, size, size)
        Sky-subtracted fluxes in bands g, r, i (any flux unit).

    Returns
    -------
    ndarray, shape (n, size, size, 3), float32
        Stretched bands g, r, i in [0, 1], channels last.
    """
    pixels = _check_tiles(pixels)
    if len(pixels) == 0:
        return np.zeros((0, pixels.shape[2], pixels.shape[3], 3), np.float32)
    sigma = sky_sigma(pixels)[..., None, None]
    stretched = np.arcsinh(np.nan_to_num(pixels, nan=0.0) / (ASINH_SOFTENING_SIGMA * sigma))
    size = pixels.shape[-1]
    centre = stretched[..., size // 4 : size - size // 4, size // 4 : size - size // 4]
    white = np.percentile(centre.reshape(*centre.shape[:2], -1), WHITE_PERCENTILE, axis=-1)[..., None, None]
    scaled = np.clip(stretched / np.maximum(white, 1e-6), 0.0, 1.0)
    return np.ascontiguousarray(scaled.transpose(0, 2, 3, 1), dtype=np.float32)


def view(stretched: np.ndarray, appearance: str, orientation: str = "identity") -> np.ndarray:
    """One network-input view of stretched tiles (n, size, size, 3 = g, r, i) -> (n, size, size, 3).

    Raises
    ------
    ValueError
        Unknown appearance or orientation.
    """
    if appearance not in APPEARANCES:
        raise ValueError(f"appearance {appearance!r}: expected one of {APPEARANCES}")
    if orientation not in ORIENTATIONS:
        raise ValueError(f"orientation {orientation!r}: expected one of {ORIENTATIONS}")
    if appearance == "colour":
        image = stretched[..., ::-1]  # i, r, g as red, green, blue
    else:
        band = stretched[..., "gri".index(appearance[-1])]
        image = np.repeat(band[..., None], 3, axis=-1)
        if appearance.startswith("inverted"):
            image = 1.0 - image
    if orientation in ("flip-lr", "rotate-180"):
        image = image[:, :, ::-1]
    if orientation in ("flip-ud", "rotate-180"):
        image = image[:, ::-1]
    return np.ascontiguousarray(image, dtype=np.float32)


def test_time_copies(stretched: np.ndarray, copies: int) -> np.ndarray:
    """The first ``copies`` of :data:`TEST_TIME_VIEWS`: shape (copies, n, size, size, 3)."""
    if not 1 <= copies <= len(TEST_TIME_VIEWS):
        raise ValueError(f"copies = {copies}: expected 1..{len(TEST_TIME_VIEWS)}")
    return np.stack([view(stretched, *v) for v in TEST_TIME_VIEWS[:copies]])


def augment(stretched: np.ndarray, rng: np.random.Generator, *, rotation: str = "right_angle") -> np.ndarray:
    """Random aspect-preserving augmentation of stretched tiles, as IncliNET trains.

    Half colour, half grayscale (bands equally likely, half of those inverted); random flips and
    180-degree rotations; with ``rotation="any"`` also a rotation by any angle 0..360 deg (the seed's);
    zoom 0.8..1.2 and translation up to 15 % of the tile (empty sky fills the edges); blur, noise,
    gamma and level changes, each on half of the images. Rotation and zoom are one similarity
    transform, so a galaxy's axis ratio is kept.

    Parameters
    ----------
    stretched : ndarray, shape (n, size, size, 3)
        Output of :func:`stretch`.
    rng : numpy Generator
        Source of all randomness (the result is reproducible for a seeded generator).
    rotation : str
        ``"right_angle"`` (flips and 180 deg only: the major axis stays horizontal) or ``"any"``.

    Returns
    -------
    ndarray, shape (n, size, size, 3), float32 in [0, 1]
    """
    if rotation not in ROTATIONS:
        raise ValueError(f"rotation {rotation!r}: expected one of {ROTATIONS}")
    out = np.empty_like(stretched, dtype=np.float32)
    size = stretched.shape[1]
    centre = (size - 1) / 2
    for k, image in enumerate(stretched):
        appearance = "colour" if rng.random() < 0.5 else ("gray-" if rng.random() < 0.5 else "inverted-") + "gri"[rng.integers(3)]
        inverted = appearance.startswith("inverted")
        # geometric and photometric changes act on the white-on-black image; inversion comes last
        picture = view(image[None], appearance.replace("inverted", "gray"), ORIENTATIONS[rng.integers(4)])[0]
        zoom = rng.uniform(*SCALE)
        shift = rng.uniform(-SHIFT_FRACTION, SHIFT_FRACTION, 2) * size
        # output pixel o samples the input at centre + R (o - centre - shift) / zoom (the angle drawn
        # only when rotating, so the right-angle stream of draws is unchanged)
        angle = rng.uniform(0, 2 * np.pi) if rotation == "any" else 0.0
        turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        matrix = np.eye(3)
        matrix[:2, :2] = turn / zoom
        offset = np.append(centre - turn @ (centre + shift) / zoom, 0.0)
        picture = ndimage.affine_transform(picture, matrix, offset=offset, order=1, mode="constant", cval=0.0)
        if rng.random() < 0.5:
            picture = ndimage.gaussian_filter(picture, sigma=(*[rng.uniform(*BLUR_SIGMA_PX)] * 2, 0))
        if rng.random() < 0.5:
            picture = picture + rng.normal(0, rng.uniform(*NOISE), picture.shape)
        if rng.random() < 0.5:
            picture = np.clip(picture, 0, 1) ** rng.uniform(*GAMMA)
        if rng.random() < 0.5:
            picture = picture * rng.uniform(*GAIN) + rng.uniform(*OFFSET)
        picture = np.clip(picture, 0.0, 1.0)
        out[k] = 1.0 - picture if inverted else picture
    return out


def resample(pixels: np.ndarray, size: int) -> np.ndarray:
    """Resample flux tiles (n, 3, H, W) to (n, 3, size, size), conserving flux; NaN stays missing."""
    pixels = np.asarray(pixels, dtype=np.float32)
    if pixels.ndim != 4 or pixels.shape[1] != 3:
        raise ValueError(f"pixels of shape {pixels.shape}: expected (n, 3, height, width)")
    if pixels.shape[2:] == (size, size):
        return pixels
    factors = (1, 1, size / pixels.shape[2], size / pixels.shape[3])
    missing = ndimage.zoom(np.isnan(pixels).astype(np.float32), factors, order=0) > 0.5
    resampled = ndimage.zoom(np.nan_to_num(pixels), factors, order=1) / (factors[2] * factors[3])
    resampled[missing] = np.nan
    return resampled.astype(np.float32)
