"""Catalogues of sky objects as files that standard tools read.

``write_catalog`` writes one table four ways: a FITS table and an ECSV file (both with units,
descriptions and the provenance in ``meta``), a plain CSV (for pandas and spreadsheets: names in the
first line, no units) and DS9 region files written with astropy ``regions``: one in Galactic and
one in ICRS coordinates for sky positions, one in image coordinates for pixel positions. Objects
are circles where they have a radius, polygons where they have an outline, points otherwise.

Needs astropy and regions (installed by every package that writes catalogues; not by the core itself).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Column", "property_column", "write_catalog", "FRAMES", "SKY_COLUMNS", "DETECTION_COLUMNS", "SkyPositions"]

FRAMES = ("galactic", "icrs", "image")
"""Frames of a catalogue's positions: sky (Galactic, ICRS) or 0-based pixel coordinates."""

# Suffixes of measured-property names and their units (STYLE: names carry units), longest first.
_UNIT_SUFFIXES = (("_per_cm2", "cm-2"), ("_arcsec", "arcsec"), ("_arcmin", "arcmin"), ("_deg", "deg"),
                  ("_px2", "pix2"), ("_px", "pix"))


@dataclasses.dataclass(frozen=True)
class Column:
    """One catalogue column: name, unit (astropy unit string, "" for none) and description."""

    name: str
    unit: str = ""
    description: str = ""


SKY_COLUMNS = (
    Column("glon", "deg", "Galactic longitude"),
    Column("glat", "deg", "Galactic latitude"),
    Column("ra", "deg", "ICRS right ascension"),
    Column("dec", "deg", "ICRS declination"),
)
"""An object's position in both catalogue frames (NaN where the image has no celestial WCS)."""

DETECTION_COLUMNS = (
    Column("name", "", "Object name in this catalogue"),
    *SKY_COLUMNS,
    Column("radius_arcsec", "arcsec", "Radius on the sky (0 when not meaningful)"),
    Column("score", "", "Confidence in [0, 1] of the detection"),
    Column("label", "", "Class label"),
)
"""The columns every detection catalogue starts with, a service's own (``infer``) and the night's alike;
each adds its own after them."""


@dataclasses.dataclass(frozen=True)
class SkyPositions:
    """Positions given in mixed frames, in both catalogue frames, in degrees."""

    galactic: Any  # astropy SkyCoord in the Galactic frame
    ra_deg: np.ndarray
    dec_deg: np.ndarray

    @classmethod
    def of(cls, lon_deg: Sequence[float], lat_deg: Sequence[float], frames: Sequence[str] | str) -> SkyPositions:
        """Positions ``(lon, lat)`` each in its frame (``"galactic"`` or ``"icrs"``; one string for all)."""
        from astropy import units as u
        from astropy.coordinates import SkyCoord

        lon, lat = np.asarray(lon_deg, float), np.asarray(lat_deg, float)
        frames = [frames] * len(lon) if isinstance(frames, str) else frames
        galactic_given = np.array([f == "galactic" for f in frames], dtype=bool)
        as_icrs = SkyCoord(lon * u.deg, lat * u.deg, frame="icrs")
        as_galactic = SkyCoord(lon * u.deg, lat * u.deg, frame="galactic")
        galactic = SkyCoord(np.where(galactic_given, lon, as_icrs.galactic.l.deg) * u.deg,
                            np.where(galactic_given, lat, as_icrs.galactic.b.deg) * u.deg, frame="galactic")
        return cls(galactic, np.where(galactic_given, as_galactic.icrs.ra.deg, lon),
                   np.where(galactic_given, as_galactic.icrs.dec.deg, lat))

    def columns(self, i: int) -> dict[str, float]:
        """The sky columns of position ``i`` (rounded to 0.4 mas so the text files are stable)."""
        return {"glon": round(float(self.galactic.l.deg[i]), 7), "glat": round(float(self.galactic.b.deg[i]), 7),
                "ra": round(float(self.ra_deg[i]), 7), "dec": round(float(self.dec_deg[i]), 7)}


def property_column(name: str, description: str = "") -> Column:
    """The column of a measured property whose name ends with its unit (``skeleton_length_px``: pix).

    The services name the properties of their detections this way (the contract's
    ``Detection.properties``), so a service's own catalogue and the night's have the same columns.

    Raises
    ------
    ValueError
        ``name`` ends with none of the known unit suffixes (``_px``, ``_px2``, ``_deg``,
        ``_arcsec``, ``_arcmin``, ``_per_cm2``).
    """
    for suffix, unit in _UNIT_SUFFIXES:
        if name.endswith(suffix):
            return Column(name, unit, description)
    raise ValueError(f"property {name!r}: its name must end with its unit, one of {[s for s, _ in _UNIT_SUFFIXES]}")


def write_catalog(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[Column],
    stem: str | Path,
    *,
    meta: Mapping[str, Any],
    frame: str = "galactic",
    lon: str = "glon",
    lat: str = "glat",
    radius_arcsec: str | None = None,
    outline: str | None = None,
    label: str | None = None,
) -> list[Path]:
    """Write ``stem.fits``, ``stem.ecsv``, ``stem.csv`` and the region files ``stem_<frame>.reg``.

    Parameters
    ----------
    rows : sequence of mappings
        One mapping per object, with a value for every column. No rows writes empty catalogues.
    columns : sequence of Column
        Columns in output order.
    stem : path
        Output path without suffix.
    meta : mapping
        Provenance (model, version, threshold, input...): header keywords of the FITS table and the
        ECSV metadata; ``FRAME`` (the frame of ``lon``/``lat``) is added. Keys of at most 8 characters.
    frame : {"galactic", "icrs", "image"}
        Frame of the ``lon``/``lat`` columns: degrees on the sky (regions are written in Galactic
        and in ICRS) or 0-based pixel column and row (one region file in DS9 image coordinates).
    lon, lat : str
        Names of the longitude and latitude (or x and y) columns.
    radius_arcsec : str, optional
        Column holding each object's radius in arcseconds: a circle where it is positive.
    outline : str, optional
        Key of the rows (not a column: it is no table cell) holding each object's outline, an
        (N, 2) sequence of (lon, lat) vertices in ``frame``: a polygon where it has 3 vertices or more.
    label : str, optional
        Column whose value labels each region.

    Returns
    -------
    list of Path
        The files written: FITS, ECSV, CSV, then the region files. Rows without a finite position
        are in the tables but not in the regions.

    Raises
    ------
    ValueError
        An unknown frame, a named column missing from ``columns``, or a ``meta`` key over 8 characters.
    """
    from astropy.table import Table

    if frame not in FRAMES:
        raise ValueError(f"frame {frame!r}: expected one of {FRAMES}")
    names = [c.name for c in columns]
    missing = [n for n in (lon, lat, radius_arcsec, label) if n is not None and n not in names]
    if missing:
        raise ValueError(f"columns {missing} are not in the catalogue's columns {names}")
    long_keys = [k for k in meta if len(k) > 8]
    if long_keys:
        raise ValueError(f"meta keys {long_keys}: FITS keywords have at most 8 characters")
    table = Table(
        rows=[[row[n] for n in names] for row in rows] or None,
        names=names,
        units=[c.unit or None for c in columns],
        descriptions=[c.description for c in columns],
        meta={**meta, "FRAME": frame},
    )
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".fits"), stem.with_suffix(".ecsv"), stem.with_suffix(".csv")]
    table.write(paths[0], format="fits", overwrite=True)
    table.write(paths[1], format="ascii.ecsv", overwrite=True)
    table.write(paths[2], format="ascii.csv", overwrite=True)
    for region_frame, regions in _regions(rows, frame, lon, lat, radius_arcsec, outline, label).items():
        path = stem.parent / f"{stem.name}_{region_frame}.reg"
        # regions writes nothing for an empty list; an empty file with its frame still says what it is.
        path.write_text(regions.serialize(format="ds9") if regions else f"# Region file format: DS9 astropy/regions\n{region_frame}\n")
        paths.append(path)
    return paths


def _regions(rows: Sequence[Mapping[str, Any]], frame: str, lon: str, lat: str, radius_arcsec: str | None,
             outline: str | None, label: str | None) -> dict[str, Any]:
    """The rows' shapes as ``regions.Regions``, by the frame each region file is written in."""
    import numpy as np
    from astropy import units as u
    from astropy.coordinates import SkyCoord
    from regions import (CircleSkyRegion, PixCoord, PointPixelRegion, PointSkyRegion, PolygonPixelRegion, PolygonSkyRegion,
                         Regions)

    placed = [row for row in rows if math.isfinite(float(row[lon])) and math.isfinite(float(row[lat]))]

    def vertices(row: Mapping[str, Any]) -> np.ndarray | None:
        points = np.asarray(row[outline], float).reshape(-1, 2) if outline is not None else np.empty((0, 2))
        return points if len(points) >= 3 and np.isfinite(points).all() else None

    def text(row: Mapping[str, Any]) -> dict[str, str]:
        return {"text": str(row[label])} if label is not None else {}

    if frame == "image":
        shapes = []
        for row in placed:
            centre, polygon = PixCoord(float(row[lon]), float(row[lat])), vertices(row)
            if polygon is not None:
                shapes.append(PolygonPixelRegion(PixCoord(polygon[:, 0], polygon[:, 1]), meta=text(row)))
            else:
                shapes.append(PointPixelRegion(centre, meta=text(row)))
        return {"image": Regions(shapes)}
    by_frame = {}
    for region_frame in ("galactic", "icrs"):
        shapes = []
        for row in placed:
            centre = SkyCoord(float(row[lon]) * u.deg, float(row[lat]) * u.deg, frame=frame).transform_to(region_frame)
            polygon = vertices(row)
            radius = float(row[radius_arcsec]) if radius_arcsec is not None else 0.0
            if polygon is not None:
                corners = SkyCoord(polygon[:, 0] * u.deg, polygon[:, 1] * u.deg, frame=frame).transform_to(region_frame)
                shapes.append(PolygonSkyRegion(corners, meta=text(row)))
            elif radius > 0:
                shapes.append(CircleSkyRegion(centre, radius * u.arcsec, meta=text(row)))
            else:
                shapes.append(PointSkyRegion(centre, meta=text(row)))
        by_frame[region_frame] = Regions(shapes)
    return by_frame
