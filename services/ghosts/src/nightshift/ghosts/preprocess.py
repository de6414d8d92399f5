"""From images to network inputs and training targets: scaling, missing pixels, augmentation.

Pixel convention of the service's tiles: three bands ``R``, ``G``, ``B`` (the channels of the DES
8-bit display images, equal for these grey-scale images), shape (3, 400, 400), float32. A band whose
unit is ``""`` or ``"8-bit"`` holds display levels 0..255 as decoded from the JPEG and is used as it
is. A band with any other unit (e.g. ``"electron"``, as a survey's calibrated FITS image cut by the
ingest carries) holds linear flux including the sky: it is put on the display scale the network was
trained on by the simulator's own display step (:func:`survey_to_display`): sky level and noise
estimated from the tile's pixels, then ``pedestal + 40 asinh(((F - sky) / noise) / 2)`` with the
nominal vignetted pedestal. NaN policy: a missing pixel is given the 8-bit level of the pixels
between CCDs (23), i.e. it is treated as lying off the detector.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from nightshift.ghosts.artefacts import Artefact
from nightshift.ghosts.config import CLASSES
from nightshift.ghosts.focalplane import GAP_LEVEL
from nightshift.ghosts.simulate import SkyModel, nominal_pedestal, stretch

__all__ = [
    "AUGMENTATIONS", "DISPLAY_UNITS", "image_to_pixels", "pixels_to_tensor", "sky_and_noise", "survey_to_display",
    "display_pixels", "training_target", "augment", "draw_augmentation",
]

DISPLAY_UNITS = ("", "8-bit")
"""Band units (compared case-insensitively) meaning 8-bit display levels; any other unit is linear flux."""

AUGMENTATIONS = ("hflip", "vflip", "rot270")
"""The seed's augmentations; each training image gets a random subset of 0 to 3 of them."""


def image_to_pixels(image: np.ndarray) -> np.ndarray:
    """Tile pixels from a decoded 8-bit image.

    Parameters
    ----------
    image : numpy.ndarray
        uint8 array of shape (H, W, 3) (RGB) or (H, W) (grey, repeated to three bands).

    Returns
    -------
    numpy.ndarray
        float32 array of shape (3, H, W), values 0..255.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image shape {image.shape}: expected (H, W, 3) or (H, W)")
    return np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)


def pixels_to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """The network input of one tile.

    Parameters
    ----------
    pixels : numpy.ndarray
        float32 array of shape (3, H, W), values 0..255, NaN where missing.

    Returns
    -------
    torch.Tensor
        float32 tensor of shape (3, H, W), values in [0, 1]; NaN replaced by 23/255 (off-detector).
    """
    pixels = np.asarray(pixels, dtype=np.float32)
    if pixels.ndim != 3 or pixels.shape[0] != 3:
        raise ValueError(f"pixels of shape {pixels.shape}: expected (3, H, W)")
    filled = np.where(np.isnan(pixels), GAP_LEVEL, pixels)
    return torch.from_numpy(np.clip(filled, 0.0, 255.0) / 255.0)


def sky_and_noise(plane: np.ndarray) -> tuple[float, float]:
    """Sky level and per-pixel noise of one linear image, robust to stars and artefacts.

    The noise is the scaled median absolute deviation of differences between horizontally
    adjacent pixels (insensitive to smooth light); the sky is the mode ``2.5 median - 1.5 mean``
    of the pixels within 3 noise sigma, iterated (the median when that distribution is skewed), as
    SExtractor estimates backgrounds.

    Parameters
    ----------
    plane : numpy.ndarray
        (H, W) float array, NaN where missing.

    Returns
    -------
    sky, noise : float
        In the plane's units; a plane without noise (constant) has noise 1.

    Raises
    ------
    ValueError
        When the plane has no finite pixel.
    """
    plane = np.asarray(plane, dtype=np.float64)
    values = plane[np.isfinite(plane)]
    if values.size == 0:
        raise ValueError("a band without any finite pixel: no sky level to estimate")
    steps = np.diff(plane, axis=1)
    steps = steps[np.isfinite(steps)]
    noise = 1.4826 * float(np.median(np.abs(steps - np.median(steps)))) / np.sqrt(2.0) if steps.size else 0.0
    if not noise > 0:
        noise = 1.0
    sky = float(np.median(values))
    for _ in range(5):
        clipped = values[np.abs(values - sky) < 3.0 * noise]
        if clipped.size == 0:
            break
        median, mean = float(np.median(clipped)), float(clipped.mean())
        sky = 2.5 * median - 1.5 * mean if abs(mean - median) < 0.3 * float(clipped.std()) + 1e-12 else median
    return sky, noise


def survey_to_display(pixels: np.ndarray, sky: SkyModel = SkyModel()) -> np.ndarray:
    """Linear survey flux on the 8-bit display scale of the training images, band by band.

    Each band's sky and noise come from :func:`sky_and_noise`; the display level is the
    simulator's display step with the nominal vignetted pedestal (no per-exposure or per-CCD
    offsets): ``nominal_pedestal + stretch((F - sky) / noise)``, clipped to 0..255.

    Parameters
    ----------
    pixels : numpy.ndarray
        (bands, N, N) linear flux (any unit, sky included or not), NaN where missing.
    sky : SkyModel
        The display parameters (pedestal, vignetting, stretch).

    Returns
    -------
    numpy.ndarray
        float32 (bands, N, N), values 0..255, NaN where the input is NaN.
    """
    pixels = np.asarray(pixels, dtype=np.float32)
    if pixels.ndim != 3 or pixels.shape[1] != pixels.shape[2]:
        raise ValueError(f"pixels of shape {pixels.shape}: expected (bands, N, N), a square focal-plane image")
    pedestal = nominal_pedestal(pixels.shape[1], sky)
    display = np.empty_like(pixels)
    for band, plane in enumerate(pixels):
        level, noise = sky_and_noise(plane)
        display[band] = np.clip(pedestal + stretch((plane - np.float32(level)) / np.float32(noise), sky), 0.0, 255.0)
    return display


def display_pixels(pixels: np.ndarray, units: Sequence[str]) -> np.ndarray:
    """Tile pixels on the display scale: 8-bit display bands as given, linear bands by :func:`survey_to_display`.

    Parameters
    ----------
    pixels : numpy.ndarray
        float32 (bands, H, W), NaN where missing.
    units : sequence of str
        Each band's unit (the tile's ``Band.unit``); see :data:`DISPLAY_UNITS`.
    """
    pixels = np.asarray(pixels, dtype=np.float32)
    if len(units) != pixels.shape[0]:
        raise ValueError(f"{len(units)} band units for pixels of shape {pixels.shape}: expected one per band")
    linear = [i for i, unit in enumerate(units) if unit.strip().lower() not in DISPLAY_UNITS]
    if not linear:
        return pixels
    display = pixels.copy()
    display[linear] = survey_to_display(pixels[linear])
    return display


def training_target(artefacts: Sequence[Artefact], height: int, width: int) -> dict[str, torch.Tensor]:
    """torchvision's Mask R-CNN target of one image.

    Returns
    -------
    dict
        ``boxes`` float32 (N, 4) as (x_min, y_min, x_max, y_max) in pixels, ``labels`` int64 (N,) in
        1..3 (index into ``CLASSES`` plus one), ``masks`` uint8 (N, H, W); N may be 0.
    """
    kept = [a for a in artefacts if a.area_px > 0]
    masks = np.zeros((len(kept), height, width), np.uint8)
    for i, artefact in enumerate(kept):
        masks[i] = artefact.mask
    return {
        "boxes": torch.tensor([a.box for a in kept], dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor([CLASSES.index(a.label) + 1 for a in kept], dtype=torch.int64),
        "masks": torch.from_numpy(masks),
    }


def draw_augmentation(rng: np.random.Generator) -> tuple[str, ...]:
    """A random subset (0 to 3 elements, in a fixed order) of ``AUGMENTATIONS``."""
    return tuple(name for name in AUGMENTATIONS if rng.uniform() < 0.5)


def augment(image: torch.Tensor, masks: torch.Tensor, operations: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Apply flips and 270-degree rotations to an image and its masks.

    Parameters
    ----------
    image : torch.Tensor
        (C, H, W) image.
    masks : torch.Tensor
        (N, H, W) masks.
    operations : sequence of str
        Names from ``AUGMENTATIONS``, applied in order.

    Returns
    -------
    image, masks, boxes : torch.Tensor
        The transformed image and masks and the masks' boxes (N, 4) float32.
    """
    for operation in operations:
        if operation == "hflip":
            image, masks = image.flip(-1), masks.flip(-1)
        elif operation == "vflip":
            image, masks = image.flip(-2), masks.flip(-2)
        elif operation == "rot270":
            image, masks = torch.rot90(image, 3, (-2, -1)), torch.rot90(masks, 3, (-2, -1))
        else:
            raise ValueError(f"augmentation {operation!r}: expected one of {AUGMENTATIONS}")
    return image, masks, _boxes(masks)


def _boxes(masks: torch.Tensor) -> torch.Tensor:
    if masks.shape[0] == 0:
        return torch.zeros((0, 4), dtype=torch.float32)
    rows, cols = masks.any(dim=2), masks.any(dim=1)
    first = lambda m: m.float().argmax(dim=1)  # noqa: E731  index of the first True
    last = lambda m: m.shape[1] - 1 - m.flip(1).float().argmax(dim=1)  # noqa: E731
    return torch.stack([first(cols), first(rows), last(cols) + 1, last(rows) + 1], dim=1).float()
