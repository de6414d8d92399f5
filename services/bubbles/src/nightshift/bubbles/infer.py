"""Batched detection in windows and over whole fields, merged on the sky, written as catalogues.

A window detector maps a batch of preprocessed (n, 2, 300, 300) windows to boxes and scores in window
pixels (NMS 0.45 inside each window). :func:`detect_field` cuts a field into the multi-scale sliding
windows, runs a window detector, maps every box to the field and the sky, and merges the detections
of overlapping windows by NMS at IoU 0.3 in sky coordinates (local tangent-plane offsets in arcsec).
A detection's circle: the centre of its box and the box's mean half-side / 1.3 as radius (the truth
boxes are centre +- 1.3 x radius).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from astropy.io import fits
from astropy.wcs import WCS
from torchvision.ops import nms

from nightshift.bubbles.config import BAND_FWHM_ARCSEC, IMAGE_SIZE, BubblesConfig
from nightshift.bubbles.preprocess import preprocess_crop
from nightshift.bubbles.windows import plan_windows, resize_crop

__all__ = ["BOX_SCALE", "WindowBoxes", "WindowDetector", "SSDWindowDetector", "FieldDetection", "circle_of_box",
           "detect_field", "merge_on_sky", "pixel_scale_arcsec", "angular_windows", "write_detection_catalogue"]

BOX_SCALE = 1.3
"""A bubble's box is its centre +- 1.3 x radius (the paper's catalogue boxes)."""

WindowBoxes = tuple[np.ndarray, np.ndarray]
"""Boxes (k, 4) float32 ``[x_min, y_min, x_max, y_max]`` in window pixels (edges) and scores (k,) in [0, 1]."""
WindowDetector = Callable[[np.ndarray], list[WindowBoxes]]
"""Maps preprocessed windows (n, 2, 300, 300) to one :data:`WindowBoxes` per window."""


class SSDWindowDetector:
    """The SSD as a :data:`WindowDetector`, in batches of ``batch_size`` windows without gradients."""

    def __init__(self, model: torch.nn.Module, *, batch_size: int = 16) -> None:
        self.model = model.eval()
        self.batch_size = batch_size
        self.device = next(model.parameters()).device

    @torch.no_grad()
    def __call__(self, windows: np.ndarray) -> list[WindowBoxes]:
        found: list[WindowBoxes] = []
        for start in range(0, len(windows), self.batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(windows[start:start + self.batch_size])).to(self.device)
            for output in self.model(list(batch)):
                found.append((output["boxes"].cpu().numpy().astype(np.float32), output["scores"].cpu().numpy().astype(np.float32)))
        return found


def pixel_scale_arcsec(wcs: WCS) -> float:
    """Mean pixel side of a celestial WCS, in arcsec."""
    from astropy.wcs.utils import proj_plane_pixel_scales

    return float(np.mean(proj_plane_pixel_scales(wcs.celestial)) * 3600.0)  # degrees per pixel for CUNIT deg


def angular_windows(config: BubblesConfig, header: fits.Header, shape: tuple[int, int], *, min_px: int = 32) -> BubblesConfig:
    """``config`` with its windows sized in arcsec (as at its training scale) for a field of ``header`` and ``shape``.

    A bubble then fills a window as it did in training, whatever the field's pixel scale; windows are at
    least ``min_px`` and at most the field's shorter side.
    """
    factor = config.pixel_scale_arcsec / pixel_scale_arcsec(WCS(header))
    sizes = sorted({min(min(shape), max(min_px, int(round(w * factor)))) for w in config.window_px})
    return dataclasses.replace(config, window_px=tuple(sizes))


def circle_of_box(box: Sequence[float]) -> tuple[float, float, float]:
    """(x, y, radius) of a box ``[x_min, y_min, x_max, y_max]``: its centre and mean half-side / 1.3."""
    x0, y0, x1, y1 = box
    return (x0 + x1) / 2.0, (y0 + y1) / 2.0, ((x1 - x0) + (y1 - y0)) / 4.0 / BOX_SCALE


@dataclasses.dataclass(frozen=True)
class FieldDetection:
    """A bubble found in a field: centre (0-based pixel coordinates) and radius in field pixels, sky position, score."""

    x_px: float
    y_px: float
    radius_px: float
    glon_deg: float
    glat_deg: float
    radius_arcsec: float
    score: float

    def box(self) -> tuple[float, float, float, float]:
        """The detection's box in field pixels (centre +- 1.3 x radius)."""
        half = BOX_SCALE * self.radius_px
        return self.x_px - half, self.y_px - half, self.x_px + half, self.y_px + half


def merge_on_sky(detections: Sequence[FieldDetection], iou: float) -> list[FieldDetection]:
    """Non-maximum suppression at ``iou`` over sky boxes (local offsets in arcsec), highest scores first."""
    if not detections:
        return []
    lon = np.array([d.glon_deg for d in detections])
    lat = np.array([d.glat_deg for d in detections])
    half = BOX_SCALE * np.array([d.radius_arcsec for d in detections])
    lon0, lat0 = lon[0], np.median(lat)
    x = ((lon - lon0 + 180.0) % 360.0 - 180.0) * np.cos(np.radians(lat0)) * 3600.0
    y = (lat - lat0) * 3600.0
    boxes = torch.from_numpy(np.stack([x - half, y - half, x + half, y + half], axis=1))
    scores = torch.tensor([d.score for d in detections], dtype=torch.float64)
    return [detections[i] for i in nms(boxes, scores, iou).tolist()]


def detect_field(pixels: np.ndarray, header: fits.Header, detector: WindowDetector, config: BubblesConfig, *,
                 min_score: float | None = None, window_batch: int = 32) -> list[FieldDetection]:
    """Detect bubbles in a whole field with multi-scale sliding windows.

    Parameters
    ----------
    pixels : ndarray
        (2, H, W) float32 field (8 um, 24 um) in any linear unit; NaN for missing pixels.
    header : fits.Header
        The field's celestial WCS.
    detector : WindowDetector
        The SSD (:class:`SSDWindowDetector`) or the classical baseline.
    config : BubblesConfig
        Window sizes and overlap, NMS thresholds, score threshold.
    min_score : float, optional
        Lowest score kept (default: ``config.score_threshold``).
    window_batch : int
        Windows preprocessed and detected at once (bounds memory).

    Returns
    -------
    list of FieldDetection
        Merged across windows, highest score first; empty when no window fits or nothing is found.
    """
    if pixels.ndim != 3 or pixels.shape[0] != 2:
        raise ValueError(f"field pixels of shape {pixels.shape}: expected (2, height, width)")
    threshold = config.score_threshold if min_score is None else min_score
    wcs = WCS(header).celestial
    scale_arcsec = pixel_scale_arcsec(wcs)
    windows = plan_windows(pixels.shape[1:], config.window_px, config.window_overlap)
    found: list[tuple[float, float, float, float]] = []
    for start in range(0, len(windows), window_batch):
        chunk = windows[start:start + window_batch]
        batch = np.stack([
            preprocess_crop(resize_crop(pixels[:, w.y0:w.y0 + w.size_px, w.x0:w.x0 + w.size_px], IMAGE_SIZE),
                            fwhm8_px=max(1.0, BAND_FWHM_ARCSEC[0] / (scale_arcsec * w.scale(IMAGE_SIZE))))
            for w in chunk
        ])
        for window, (boxes, scores) in zip(chunk, detector(batch)):
            factor = window.scale(IMAGE_SIZE)
            for box, score in zip(boxes, scores):
                if score < threshold:
                    continue
                x, y, radius = circle_of_box(box)
                found.append((window.x0 + x * factor - 0.5, window.y0 + y * factor - 0.5, radius * factor, float(score)))
    if not found:
        return []
    xs, ys, radii, scores = (np.array(v) for v in zip(*found))
    lon, lat = wcs.pixel_to_world_values(xs, ys)
    detections = [FieldDetection(float(x), float(y), float(r), float(lo % 360.0), float(la), float(r * scale_arcsec), float(s))
                  for x, y, r, lo, la, s in zip(xs, ys, radii, lon, lat, scores)]
    return merge_on_sky(detections, config.field_nms_iou)


def write_detection_catalogue(rows: Sequence[dict], stem: Path, *, meta: dict[str, object]) -> list[Path]:
    """Write detections (dicts with field, glon, glat, radius_arcsec, x_px, y_px, radius_px, score) as FITS, ECSV, CSV
    and DS9 regions in Galactic and ICRS, with the provenance ``meta``: the night's detection columns
    (``nightshift.core.catalog.DETECTION_COLUMNS``, named ``bubbles-NNNNN`` best first), then the field and pixel position."""
    from nightshift.core.catalog import DETECTION_COLUMNS, Column, SkyPositions, write_catalog

    columns = [
        *DETECTION_COLUMNS,
        Column("field", "", "image or field the bubble was found in"),
        Column("x_px", "pix", "0-based column of the centre in the field"),
        Column("y_px", "pix", "0-based row of the centre in the field"),
        Column("radius_px", "pix", "bubble radius in field pixels"),
    ]
    ranked = sorted(rows, key=lambda r: (-r["score"], r["glon"], r["glat"]))
    sky = SkyPositions.of([r["glon"] for r in ranked], [r["glat"] for r in ranked], "galactic")
    named = [{**r, **sky.columns(i), "name": f"bubbles-{i + 1:05d}", "label": "bubble"} for i, r in enumerate(ranked)]
    return write_catalog(named, columns, stem, meta=meta, frame="galactic", lon="glon", lat="glat", radius_arcsec="radius_arcsec",
                         label="name")
