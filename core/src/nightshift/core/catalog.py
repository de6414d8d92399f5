"""Catalogues of sky objects as files: a FITS table and a CSV with units, plus a DS9 region file.

Needs astropy (installed by every service that writes catalogues; not by the core itself).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["Column", "write_catalog"]


@dataclasses.dataclass(frozen=True)
class Column:
    """One catalogue column: name, unit (astropy unit string, "" for none) and description."""

    name: str
    unit: str = ""
    description: str = ""


def write_catalog(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[Column],
    stem: str | Path,
    *,
    frame: str = "galactic",
    lon: str = "glon",
    lat: str = "glat",
    radius_arcsec: str | None = None,
    label: str | None = None,
    meta: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Write ``stem.fits``, ``stem.csv`` (ECSV: CSV with a commented header carrying units) and ``stem.reg``.

    Parameters
    ----------
    rows : sequence of mappings
        One mapping per object, with a value for every column. No rows writes empty catalogues.
    columns : sequence of Column
        Columns in output order.
    stem : path
        Output path without suffix.
    frame : {"galactic", "icrs"}
        Frame of the ``lon``/``lat`` columns, for the region file.
    lon, lat : str
        Names of the longitude and latitude columns, in degrees.
    radius_arcsec : str, optional
        Column holding each object's radius in arcseconds (regions are circles); else points.
    label : str, optional
        Column whose value labels each region.
    meta : mapping, optional
        Header keywords of the FITS table and the ECSV (provenance).

    Returns
    -------
    list of Path
        The three files written.
    """
    from astropy.table import Table

    if frame not in ("galactic", "icrs"):
        raise ValueError(f"frame {frame!r}: expected 'galactic' or 'icrs'")
    names = [c.name for c in columns]
    missing = [n for n in (lon, lat, radius_arcsec, label) if n is not None and n not in names]
    if missing:
        raise ValueError(f"columns {missing} are not in the catalogue's columns {names}")
    table = Table(
        rows=[[row[n] for n in names] for row in rows] or None,
        names=names,
        units=[c.unit or None for c in columns],
        descriptions=[c.description for c in columns],
        meta=dict(meta or {}),
    )
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".fits"), stem.with_suffix(".csv"), stem.with_suffix(".reg")]
    table.write(paths[0], format="fits", overwrite=True)
    table.write(paths[1], format="ascii.ecsv", delimiter=",", overwrite=True)
    lines = ["# Region file format: DS9 version 4.1", frame]
    for row in rows:
        shape = (
            f'circle({row[lon]:.6f},{row[lat]:.6f},{row[radius_arcsec]:.2f}")'
            if radius_arcsec else f"point({row[lon]:.6f},{row[lat]:.6f})"
        )
        lines.append(shape + (f" # text={{{row[label]}}}" if label else ""))
    paths[2].write_text("\n".join(lines) + "\n")
    return paths
