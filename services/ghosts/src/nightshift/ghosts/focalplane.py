"""The DECam focal plane as it appears in the 400x400 DES images: 62 CCDs in 12 rows.

Geometry measured on the 30 real DES images of the seed's data set (median image): rows of
3, 4, 5, 6, 6, 7, 7, 6, 6, 5, 4, 3 CCDs, each CCD 58 x 29 pixels, row pitch 32 pixels starting at
row 10, column pitch 60.3 pixels centred on column 199.7 (the outer CCDs of the two 7-CCD rows are
cut by the image edge). Pixels outside the CCDs read 23 in the 8-bit images. CCDs are numbered
1..62 in raster order (top row first, left to right), DECam's CCDNUM order; CCD 61 (N30) has been
dead since 2012 and CCD 2 (S30) is off in 17 of the 30 real images.
"""

from __future__ import annotations

import functools

import numpy as np

from nightshift.ghosts.config import TILE_SIZE

__all__ = [
    "ROW_COUNTS", "CCD_WIDTH_PX", "CCD_HEIGHT_PX", "DEAD_CCD", "INTERMITTENT_CCD", "GAP_LEVEL",
    "ccd_boxes", "ccd_map", "affected_ccds",
]

ROW_COUNTS = (3, 4, 5, 6, 6, 7, 7, 6, 6, 5, 4, 3)
CCD_WIDTH_PX = 58.0
CCD_HEIGHT_PX = 29.0
_ROW_PITCH_PX = 32.0
_FIRST_ROW_TOP_PX = 10.0
_COLUMN_PITCH_PX = 60.3
_CENTRE_COLUMN_PX = 199.7
DEAD_CCD = 61
INTERMITTENT_CCD = 2
GAP_LEVEL = 23.0
"""8-bit value of pixels between and outside the CCDs."""


@functools.cache
def ccd_boxes() -> dict[int, tuple[float, float, float, float]]:
    """Each CCD's extent ``(x_min, y_min, x_max, y_max)`` in image pixels (pixel centres at integers).

    Returns
    -------
    dict
        CCD number (1..62) to its box; ``x_max``/``y_max`` are exclusive.
    """
    boxes = {}
    number = 1
    for row, count in enumerate(ROW_COUNTS):
        top = _FIRST_ROW_TOP_PX + row * _ROW_PITCH_PX
        for k in range(count):
            centre = _CENTRE_COLUMN_PX + (k - (count - 1) / 2) * _COLUMN_PITCH_PX
            boxes[number] = (centre - CCD_WIDTH_PX / 2, top, centre + CCD_WIDTH_PX / 2, top + CCD_HEIGHT_PX)
            number += 1
    return boxes


@functools.cache
def _ccd_map(size: int) -> np.ndarray:
    labels = np.zeros((size, size), dtype=np.uint8)
    scale = size / TILE_SIZE
    for number, (x0, y0, x1, y1) in ccd_boxes().items():
        cols = slice(max(int(np.ceil(x0 * scale)), 0), max(int(np.ceil(x1 * scale)), 0))
        rows = slice(int(np.ceil(y0 * scale)), int(np.ceil(y1 * scale)))
        labels[rows, cols] = number
    labels.setflags(write=False)
    return labels


def ccd_map(size: int = TILE_SIZE) -> np.ndarray:
    """The CCD number of every pixel of a ``size`` x ``size`` focal-plane image (0 between CCDs).

    Parameters
    ----------
    size : int
        Image side in pixels; the 400-pixel layout is scaled to it.

    Returns
    -------
    numpy.ndarray
        uint8 array of shape (size, size), read-only.
    """
    if size < 1:
        raise ValueError(f"size {size}: expected a positive number of pixels")
    return _ccd_map(int(size))


def affected_ccds(mask: np.ndarray, *, min_pixels: int = 10) -> list[int]:
    """CCDs that a boolean mask covers with at least ``min_pixels`` pixels.

    Parameters
    ----------
    mask : numpy.ndarray
        Boolean array of shape (H, W) with H == W (a focal-plane image or a union of masks).
    min_pixels : int
        Pixels of a CCD the mask must cover for the CCD to count as affected (10 pixels is about
        0.6% of a CCD).

    Returns
    -------
    list of int
        Sorted CCD numbers; empty for an empty mask. The dead CCD is never listed.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2 or mask.shape[0] != mask.shape[1]:
        raise ValueError(f"mask shape {mask.shape}: expected a square (H, W) array")
    counts = np.bincount(ccd_map(mask.shape[0])[mask], minlength=63)
    return [int(n) for n in np.flatnonzero(counts >= min_pixels) if n not in (0, DEAD_CCD)]
