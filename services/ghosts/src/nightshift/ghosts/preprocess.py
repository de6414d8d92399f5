"""From images to network inputs and training targets: scaling, missing pixels, augmentation.

Pixel convention of the service's tiles: three bands ``R``, ``G``, ``B`` (the channels of the DES
8-bit display images, equal for these grey-scale images), float32 values 0..255 as decoded from the
JPEG, shape (3, 400, 400). NaN policy: a missing pixel is given the 8-bit level of the pixels
between CCDs (23), i.e. it is treated as lying off the detector.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from nightshift.ghosts.artefacts import Artefact
from nightshift.ghosts.config import CLASSES
from nightshift.ghosts.focalplane import GAP_LEVEL

__all__ = ["AUGMENTATIONS", "image_to_pixels", "pixels_to_tensor", "training_target", "augment", "draw_augmentation"]

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
