"""Detections as parallel arrays, the connected-group rule that finds them, their sky positions and their merging.

Two rules find candidates in a stack of maps: connected groups above a threshold (the seed's,
:func:`find_detections`) and local maxima above a threshold (:func:`find_peaks`), which splits a group
holding two clusters into two candidates. The lowest layer of the detection code, shared by :mod:`~nightshift.clusters.infer` (the U-Net's
probability maps) and :mod:`~nightshift.clusters.matched_filter` (the MMF's S/N maps), so that
neither imports the other.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.wcs import WCS
from scipy import ndimage

__all__ = ["Detections", "concatenate_detections", "find_detections", "find_peaks", "sky_positions", "merge_detections"]

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


@dataclasses.dataclass(frozen=True)
class Detections:
    """Detections as parallel arrays, one entry per detection.

    Attributes
    ----------
    tile : ndarray of int
        Index of the tile (in the batch or field) the detection was found in.
    x, y : ndarray
        Barycentre column and row in tile pixels (0-based).
    radius_px : ndarray
        Radius in pixels (disk of the group's area, capped).
    score : ndarray
        Peak value of the map over the group (probability, or S/N for the baseline).
    n_pixels : ndarray of int
        Pixels in the group.
    edge_px : ndarray
        Distance of the centre from the nearest tile edge, in pixels.
    glon, glat : ndarray
        Galactic position in degrees (NaN until :func:`sky_positions`).
    mmf_snr : ndarray
        The MMF's S/N measured at the detection (NaN where the MMF was not run on its tile).
    """

    tile: np.ndarray
    x: np.ndarray
    y: np.ndarray
    radius_px: np.ndarray
    score: np.ndarray
    n_pixels: np.ndarray
    edge_px: np.ndarray
    glon: np.ndarray
    glat: np.ndarray
    mmf_snr: np.ndarray

    def __len__(self) -> int:
        return len(self.tile)

    def select(self, keep: np.ndarray) -> Detections:
        return Detections(**{f.name: getattr(self, f.name)[keep] for f in dataclasses.fields(self)})

    @classmethod
    def empty(cls) -> Detections:
        return cls(**{f.name: np.zeros(0, dtype=int if f.name in ("tile", "n_pixels") else float)
                      for f in dataclasses.fields(cls)})


def concatenate_detections(parts: Sequence[Detections]) -> Detections:
    """One table of the rows of ``parts``, in order (their tile indices unchanged)."""
    if not parts:
        return Detections.empty()
    return Detections(**{f.name: np.concatenate([getattr(d, f.name) for d in parts]) for f in dataclasses.fields(Detections)})


def find_detections(
    maps: np.ndarray, *, threshold: float, min_pixels: int, max_radius_px: float,
) -> Detections:
    """Groups of at least ``min_pixels`` 8-connected pixels above ``threshold`` in each (n, H, W) map."""
    maps = np.asarray(maps)
    if maps.ndim != 3:
        raise ValueError(f"maps shape {maps.shape}: expected (n, height, width)")
    rows: list[tuple[float, ...]] = []
    height, width = maps.shape[1:]
    for index, values in enumerate(maps):
        labels, count = ndimage.label(values > threshold, structure=_EIGHT_CONNECTED)
        if count == 0:
            continue
        ids = np.arange(1, count + 1)
        sizes = ndimage.sum_labels(np.ones_like(values), labels, ids)
        centres = ndimage.center_of_mass(np.ones_like(values), labels, ids)
        peaks = ndimage.maximum(values, labels, ids)
        for size, (y, x), peak in zip(sizes, centres, peaks):
            if size >= min_pixels:
                edge = min(x, y, width - 1 - x, height - 1 - y)
                rows.append((index, x, y, min(math.sqrt(size / math.pi), max_radius_px), peak, size, edge))
    return _from_rows(rows)


def find_peaks(
    maps: np.ndarray, *, threshold: float, min_pixels: int, max_radius_px: float, min_separation_px: int = 2,
) -> Detections:
    """Local maxima above ``threshold`` in each (n, H, W) map, in groups of at least ``min_pixels`` pixels above it.

    A pixel is a peak when no pixel within ``min_separation_px`` (a square window) is higher;
    touching peak pixels of equal value (a saturated plateau) are one peak at their barycentre.
    Each peak's radius is that of a disk of its group's area shared equally by the group's peaks
    (capped at ``max_radius_px``), its score the peak value, ``n_pixels`` its group's size.
    """
    maps = np.asarray(maps)
    if maps.ndim != 3:
        raise ValueError(f"maps shape {maps.shape}: expected (n, height, width)")
    rows: list[tuple[float, ...]] = []
    height, width = maps.shape[1:]
    window = 2 * min_separation_px + 1
    for index, values in enumerate(maps):
        above = values > threshold
        groups, count = ndimage.label(above, structure=_EIGHT_CONNECTED)
        if count == 0:
            continue
        group_sizes = np.bincount(groups.ravel(), minlength=count + 1)
        highest = ndimage.maximum_filter(np.where(above, values, -np.inf), size=window, mode="constant", cval=-np.inf)
        peak_labels, n_peaks = ndimage.label(above & (values >= highest), structure=_EIGHT_CONNECTED)
        if n_peaks == 0:
            continue
        ids = np.arange(1, n_peaks + 1)
        centres = ndimage.center_of_mass(np.ones_like(values), peak_labels, ids)
        tops = ndimage.maximum(values, peak_labels, ids)
        group_of_peak = ndimage.maximum(groups, peak_labels, ids).astype(int)
        peaks_per_group = np.bincount(group_of_peak, minlength=count + 1)
        for (y, x), top, group in zip(centres, tops, group_of_peak):
            size = group_sizes[group]
            if size >= min_pixels:
                edge = min(x, y, width - 1 - x, height - 1 - y)
                radius = min(math.sqrt(size / (math.pi * peaks_per_group[group])), max_radius_px)
                rows.append((index, x, y, radius, top, size, edge))
    return _from_rows(rows)


def _from_rows(rows: list[tuple[float, ...]]) -> Detections:
    """Detections from rows (tile, x, y, radius_px, score, n_pixels, edge_px), without sky positions."""
    if not rows:
        return Detections.empty()
    table = np.array(rows, dtype=float)
    return Detections(
        tile=table[:, 0].astype(int), x=table[:, 1], y=table[:, 2], radius_px=table[:, 3], score=table[:, 4],
        n_pixels=table[:, 5].astype(int), edge_px=table[:, 6], glon=np.full(len(table), np.nan), glat=np.full(len(table), np.nan),
        mmf_snr=np.full(len(table), np.nan),
    )


def sky_positions(detections: Detections, wcs_list: Sequence[WCS | None]) -> Detections:
    """The detections with Galactic positions from their tiles' WCS (any celestial frame; NaN where a tile has none)."""
    glon, glat = np.full(len(detections), np.nan), np.full(len(detections), np.nan)
    for tile in np.unique(detections.tile):
        if wcs_list[tile] is None:
            continue
        picked = detections.tile == tile
        world = wcs_list[tile].pixel_to_world(detections.x[picked], detections.y[picked]).galactic
        glon[picked], glat[picked] = world.l.deg, world.b.deg
    return dataclasses.replace(detections, glon=glon, glat=glat)


def merge_detections(detections: Detections, *, radius_arcmin: float) -> Detections:
    """One detection per cluster: of those within ``radius_arcmin``, the one farthest from its tile's edge."""
    if len(detections) == 0:
        return detections
    order = np.lexsort((-detections.score, -detections.edge_px))
    vectors = np.stack(SkyCoord(l=detections.glon * u.deg, b=detections.glat * u.deg, frame="galactic")
                       .cartesian.xyz.value, axis=-1)
    cos_radius = math.cos(math.radians(radius_arcmin / 60.0))
    taken = np.zeros(len(detections), dtype=bool)
    kept = []
    for index in order:
        if taken[index]:
            continue
        kept.append(index)
        taken |= vectors @ vectors[index] >= cos_radius
    return detections.select(np.array(sorted(kept)))
