"""One artefact instance (class, confidence, mask) and its encodings: box and COCO RLE."""

from __future__ import annotations

import dataclasses

import numpy as np
from pycocotools import mask as coco_mask

from nightshift.ghosts.config import CLASSES

__all__ = ["Artefact", "mask_box", "encode_rle", "decode_rle", "uncompressed_rle"]


@dataclasses.dataclass(frozen=True)
class Artefact:
    """A ghost or scattered-light artefact in one image.

    Parameters
    ----------
    label : str
        One of ``CLASSES``: "bright", "faint" or "rays".
    mask : numpy.ndarray
        Boolean array of shape (H, W) on the image's pixel grid.
    score : float
        Confidence in [0, 1] (1 for truth).
    """

    label: str
    mask: np.ndarray
    score: float = 1.0

    def __post_init__(self) -> None:
        if self.label not in CLASSES:
            raise ValueError(f"artefact label {self.label!r}: expected one of {CLASSES}")
        if self.mask.ndim != 2 or self.mask.dtype != bool:
            raise ValueError(f"artefact mask of shape {self.mask.shape} and dtype {self.mask.dtype}: expected a 2-D bool array")

    @property
    def box(self) -> tuple[float, float, float, float]:
        """``(x_min, y_min, x_max, y_max)`` in pixels, max exclusive (see :func:`mask_box`)."""
        return mask_box(self.mask)

    @property
    def area_px(self) -> int:
        """Mask area in pixels."""
        return int(self.mask.sum())


def mask_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    """Tight box of a boolean mask: ``(x_min, y_min, x_max, y_max)`` in pixels, max exclusive.

    An empty mask gives ``(0, 0, 0, 0)``.
    """
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return (0.0, 0.0, 0.0, 0.0)
    return (float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1))


def encode_rle(mask: np.ndarray) -> dict:
    """pycocotools' compressed RLE of a boolean (H, W) mask (for COCO evaluation)."""
    return coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))


def uncompressed_rle(mask: np.ndarray) -> list[int]:
    """COCO uncompressed RLE counts of a boolean (H, W) mask: column-major runs, starting with zeros.

    Examples
    --------
    >>> uncompressed_rle(np.array([[0, 1], [1, 1]], dtype=bool))
    [1, 3]
    """
    flat = np.asarray(mask, dtype=bool).flatten(order="F")
    if flat.size == 0:
        return []
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    runs = np.diff(bounds).tolist()
    return [0, *runs] if flat[0] else runs


def decode_rle(counts: list[int], height: int, width: int) -> np.ndarray:
    """Boolean (height, width) mask from COCO uncompressed RLE counts (the inverse of :func:`uncompressed_rle`).

    Raises
    ------
    ValueError
        If the runs do not add up to ``height * width``.
    """
    counts = [int(c) for c in counts]
    if sum(counts) != height * width:
        raise ValueError(f"RLE runs add up to {sum(counts)} pixels, expected {height} x {width} = {height * width}")
    values = np.arange(len(counts)) % 2 == 1
    return np.repeat(values, counts).reshape((height, width), order="F")
