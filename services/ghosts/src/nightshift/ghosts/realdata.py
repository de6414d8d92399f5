"""The real DES images of the seed and their VIA annotations, as images and :class:`Artefact` masks.

Every VIA region shape with an area becomes a mask on the 400x400 pixel grid (pixel centres at
integer coordinates): ``circle`` (cx, cy, r), ``ellipse`` (cx, cy, rx, ry, theta: rotation in radians,
clockwise on the image as VIA draws it), ``polygon`` and ``polyline`` (both filled: the annotators
drew closed outlines with either tool; an open polyline is closed by its last segment) and ``rect``
(x, y, width, height). ``point`` regions and regions without a ``Type`` have no area and are skipped.
Classes: the ``Type`` attribute Bright, Faint or Rays, in lower case.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from skimage.draw import polygon as fill_polygon

from nightshift.ghosts.artefacts import Artefact
from nightshift.ghosts.config import CLASSES, TILE_SIZE

__all__ = ["RealImage", "region_mask", "via_regions", "load_via", "load_real_images", "split_real", "DEFAULT_REAL_DIR"]

DEFAULT_REAL_DIR = Path("/work/shared/data/ghosts")
"""Where the seed's real images live on the development machines (used only when present)."""


@dataclasses.dataclass(frozen=True)
class RealImage:
    """One real DES image with its annotations.

    Parameters
    ----------
    name : str
        File name, e.g. ``Ghost_img_D00158660.jpg`` (D + exposure number).
    image : numpy.ndarray
        uint8 (400, 400, 3) RGB.
    artefacts : list of Artefact
        Annotated artefacts.
    """

    name: str
    image: np.ndarray
    artefacts: list[Artefact]


def region_mask(shape: Mapping[str, Any], height: int = TILE_SIZE, width: int = TILE_SIZE) -> np.ndarray | None:
    """The boolean (height, width) mask of one VIA ``shape_attributes`` record, or None for a point.

    Raises
    ------
    ValueError
        For a shape name this loader does not know.
    """
    name = shape["name"]
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    if name == "circle":
        return (x - shape["cx"]) ** 2 + (y - shape["cy"]) ** 2 <= float(shape["r"]) ** 2
    if name == "ellipse":
        theta = float(shape.get("theta", 0.0))
        dx, dy = x - shape["cx"], y - shape["cy"]
        u = dx * np.cos(theta) + dy * np.sin(theta)  # coordinates along the rotated axes
        v = -dx * np.sin(theta) + dy * np.cos(theta)
        return (u / max(float(shape["rx"]), 1e-6)) ** 2 + (v / max(float(shape["ry"]), 1e-6)) ** 2 <= 1.0
    if name in ("polygon", "polyline"):
        mask = np.zeros((height, width), dtype=bool)
        rows, cols = fill_polygon(np.asarray(shape["all_points_y"], float), np.asarray(shape["all_points_x"], float), (height, width))
        mask[rows, cols] = True
        return mask
    if name == "rect":
        x0, y0 = float(shape["x"]), float(shape["y"])
        return (x >= x0) & (x <= x0 + float(shape["width"])) & (y >= y0) & (y <= y0 + float(shape["height"]))
    if name == "point":
        return None
    raise ValueError(f"VIA shape {name!r}: expected circle, ellipse, polygon, polyline, rect or point")


def via_regions(record: Mapping[str, Any], height: int = TILE_SIZE, width: int = TILE_SIZE) -> list[Artefact]:
    """The artefacts of one VIA image record (``{"filename", "regions": [...]}``)."""
    artefacts = []
    for region in record.get("regions", []):
        label = str(region.get("region_attributes", {}).get("Type", "")).lower()
        mask = region_mask(region["shape_attributes"], height, width)
        if label in CLASSES and mask is not None and mask.any():
            artefacts.append(Artefact(label=label, mask=mask))
    return artefacts


def load_via(path: str | Path) -> dict[str, dict[str, Any]]:
    """VIA records keyed by file name, from a VIA project file or a plain list of records."""
    content = json.loads(Path(path).read_text())
    records = content["_via_img_metadata"].values() if isinstance(content, dict) else content
    return {record["filename"]: record for record in records}


def load_real_images(directory: str | Path = DEFAULT_REAL_DIR, *, annotations: str | Path | None = None) -> list[RealImage]:
    """The real images of ``directory/images`` that the annotation file covers, sorted by name.

    Parameters
    ----------
    directory : path
        Holds ``images/*.jpg`` and ``annotations/annotations_full.json``.
    annotations : path, optional
        Another VIA file to read the annotations from (e.g. one annotator's common-core file).

    Raises
    ------
    FileNotFoundError
        If the directory or the annotation file does not exist.
    """
    directory = Path(directory)
    records = load_via(annotations or directory / "annotations" / "annotations_full.json")
    images = []
    for path in sorted((directory / "images").glob("*.jpg")):
        if path.name in records:
            pixels = np.asarray(Image.open(path).convert("RGB"))
            images.append(RealImage(path.name, pixels, via_regions(records[path.name], *pixels.shape[:2])))
    return images


def split_real(images: Sequence[RealImage], train_count: int) -> tuple[list[RealImage], list[RealImage]]:
    """Split real images into training and held-out sets by a hash of the file name (stable, unbiased)."""
    ranked = sorted(images, key=lambda im: hashlib.sha256(im.name.encode()).hexdigest())
    train_count = max(0, min(train_count, len(ranked)))
    return ranked[:train_count], ranked[train_count:]
