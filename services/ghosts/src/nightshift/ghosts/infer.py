"""Batched inference, post-processing, field merging, sky coordinates and catalogues.

Post-processing: masks are the network's mask probabilities thresholded at 0.5 on the 400x400 grid;
instances with empty masks are dropped; instances below the confidence threshold (the seed's 0.8)
are not reported. An image "has artefacts" when any instance is reported; its affected CCDs are
those the union of its masks covers. Each DES tile is a whole focal plane, so merging a field means
pooling the instances of the field's tiles and dropping duplicates (same class, mask IoU > 0.5,
the lower score goes).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from nightshift.ghosts.artefacts import Artefact
from nightshift.ghosts.config import CLASSES
from nightshift.ghosts.focalplane import affected_ccds
from nightshift.ghosts.model import GhostDetector
from nightshift.ghosts.preprocess import pixels_to_tensor

__all__ = [
    "Detector", "ImageFindings", "findings", "merge_field", "sky_position", "catalogue_row", "write_instance_catalogue",
    "CATALOGUE_COLUMNS",
]


class Detector:
    """A trained :class:`GhostDetector` applied to batches of tile pixels.

    Parameters
    ----------
    detector : GhostDetector
        The network (moved to ``device``).
    device : torch.device, optional
        Where to run (default: the network's device).
    batch_size : int
        Images per forward pass.
    """

    def __init__(self, detector: GhostDetector, *, device: torch.device | None = None, batch_size: int = 4) -> None:
        self.device = device or next(detector.parameters()).device
        self.detector = detector.to(self.device)
        self.batch_size = batch_size

    def predict(self, pixels: Sequence[np.ndarray], *, score_threshold: float) -> list[list[Artefact]]:
        """Artefacts found in each image.

        Parameters
        ----------
        pixels : sequence of numpy.ndarray
            float32 (3, H, W), values 0..255, NaN where missing.
        score_threshold : float
            Lowest confidence reported (0 for evaluation, which sweeps it).

        Returns
        -------
        list of list of Artefact
            Per image, its instances by decreasing score; empty input gives an empty list.
        """
        found: list[list[Artefact]] = []
        for start in range(0, len(pixels), self.batch_size):
            images = [pixels_to_tensor(p).to(self.device) for p in pixels[start : start + self.batch_size]]
            for output in self.detector.detect(images):
                masks = (output["masks"][:, 0] >= 0.5).cpu().numpy()
                instances = [
                    Artefact(label=CLASSES[int(label) - 1], mask=mask, score=float(score))
                    for label, score, mask in zip(output["labels"].cpu(), output["scores"].cpu(), masks)
                    if score >= score_threshold and mask.any()
                ]
                found.append(sorted(instances, key=lambda a: -a.score))
        return found


@dataclasses.dataclass(frozen=True)
class ImageFindings:
    """The image-level summary: whether any artefact is reported and the CCDs the artefacts cover."""

    has_artefacts: bool
    ccds: list[int]


def findings(artefacts: Sequence[Artefact], *, score_threshold: float) -> ImageFindings:
    """Image-level decision and affected CCDs from the instances scoring at least ``score_threshold``."""
    kept = [a for a in artefacts if a.score >= score_threshold]
    if not kept:
        return ImageFindings(False, [])
    union = np.logical_or.reduce([a.mask for a in kept])
    return ImageFindings(True, affected_ccds(union))


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def merge_field(tiles: Sequence[Sequence[Artefact]], *, iou_threshold: float = 0.5) -> list[Artefact]:
    """Pool the instances of several tiles of one field, dropping duplicates (greedy, by score).

    Parameters
    ----------
    tiles : sequence of sequence of Artefact
        Instances of each tile of the field, on the same pixel grid.
    iou_threshold : float
        Mask IoU above which two instances of the same class are one.
    """
    pooled = sorted((a for tile in tiles for a in tile), key=lambda a: -a.score)
    kept: list[Artefact] = []
    for candidate in pooled:
        if all(k.label != candidate.label or _mask_iou(k.mask, candidate.mask) <= iou_threshold for k in kept):
            kept.append(candidate)
    return kept


def sky_position(wcs_header: str, x: float, y: float) -> tuple[float, float] | None:
    """(RA, Dec) in degrees of pixel (x, y) (0-based) from a FITS WCS header string; None without a WCS."""
    if not wcs_header.strip():
        return None
    from astropy.io import fits
    from astropy.wcs import WCS

    wcs = WCS(fits.Header.fromstring(wcs_header))
    if not wcs.has_celestial:
        return None
    ra, dec = wcs.celestial.all_pix2world([[x, y]], 0)[0]
    return float(ra), float(dec)


CATALOGUE_COLUMNS = (
    ("field", "", "Image (tile id or file name)"),
    ("x_min", "pix", "Box left edge"), ("y_min", "pix", "Box top edge"),
    ("x_max", "pix", "Box right edge (exclusive)"), ("y_max", "pix", "Box bottom edge (exclusive)"),
    ("area_px2", "pix2", "Mask area"),
    ("ccds", "", "Affected CCD numbers, comma-separated"),
)
"""The instance's own columns, after the night's detection columns (sky position of the box centre, NaN without a WCS)."""


def write_instance_catalogue(rows: Sequence[dict], stem: str | Path, *, meta: dict[str, object]) -> list[Path]:
    """Write the instances as ``stem.fits``, ``stem.ecsv``, ``stem.csv`` and DS9 regions in Galactic and ICRS
    (:func:`nightshift.core.catalog.write_catalog`), with the provenance ``meta``: the night's detection
    columns (``nightshift.core.catalog.DETECTION_COLUMNS``, named ``ghosts-NNNNN`` best first), then
    :data:`CATALOGUE_COLUMNS`.

    Each row holds ``ra``, ``dec``, ``label``, ``score`` and the :data:`CATALOGUE_COLUMNS` values of one instance.
    """
    from nightshift.core.catalog import DETECTION_COLUMNS, Column, SkyPositions, write_catalog

    columns = [*DETECTION_COLUMNS, *(Column(name, unit, description) for name, unit, description in CATALOGUE_COLUMNS)]
    ranked = sorted(rows, key=lambda r: (-r["score"], r["field"], r["x_min"], r["y_min"]))
    sky = SkyPositions.of([r["ra"] for r in ranked], [r["dec"] for r in ranked], "icrs")
    named = [{**r, **sky.columns(i), "name": f"ghosts-{i + 1:05d}", "radius_arcsec": 0.0} for i, r in enumerate(ranked)]
    return write_catalog(named, columns, stem, frame="icrs", lon="ra", lat="dec", label="label",
                         meta={"ORIGIN": "nightshift-ghosts", **meta})


def catalogue_row(image: str, artefact: Artefact, wcs_header: str = "") -> dict:
    """One catalogue row of an instance (sky position of its box centre when a WCS is given)."""
    x0, y0, x1, y1 = artefact.box
    sky = sky_position(wcs_header, (x0 + x1 - 1) / 2, (y0 + y1 - 1) / 2) or (float("nan"), float("nan"))
    return {
        "field": image, "label": artefact.label, "score": artefact.score, "x_min": x0, "y_min": y0, "x_max": x1,
        "y_max": y1, "area_px2": artefact.area_px, "ra": sky[0], "dec": sky[1],
        "ccds": ",".join(str(c) for c in affected_ccds(artefact.mask)),
    }
