"""One catalogue per task and night, from the recorded results: duplicates merged on the sky.

Detections (also those derived from segmentation maps, and instances) found in overlapping tiles
are the same object seen twice: objects of one label closer than the service's
``duplicate_radius_arcsec`` are merged greedily, highest score first, keeping the best-scored
position and counting the tiles that saw it; the properties the service measured on each object
(``Detection.properties``, the unit in the name) become columns with that unit, and its outline
(``Detection.outline``) its shape in the region files. Measurements are per tile (a galaxy image, a
data quality figure): one row per tile, a column per quantity with its unit beside ``<quantity>_err``.
Every catalogue carries Galactic and ICRS coordinates, is written as FITS, ECSV, plain CSV and DS9
regions in both frames (:func:`nightshift.core.catalog.write_catalog`), and its rows are in a fixed
order, so the same results always give the same bytes.

Detections are cross-matched with the task's reference catalogues (real catalogues of known
objects, e.g. PSZ2 for clusters): each row says in which catalogues it has a counterpart within the
task's cross-match radius (``known_in``) and the nearest counterpart's name (``known_as``); a row
with none is a new object.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord, search_around_sky

from nightshift.core.catalog import DETECTION_COLUMNS as _CORE_DETECTION_COLUMNS
from nightshift.core.catalog import SKY_COLUMNS, Column, SkyPositions, property_column, write_catalog
from nightshift.v1 import results_pb2, task_service_pb2, tile_pb2

__all__ = ["SkyObject", "SkyPositions", "ReferenceCatalogue", "detections_of", "merge_duplicates", "catalogue_rows", "cross_match",
           "catalogue_columns", "write_task_catalogue", "DETECTION_COLUMNS", "MEASUREMENT_COLUMNS"]

_FRAMES = {tile_pb2.SKY_FRAME_GALACTIC: "galactic", tile_pb2.SKY_FRAME_ICRS: "icrs"}

DETECTION_COLUMNS = (
    *_CORE_DETECTION_COLUMNS,
    Column("n_tiles", "", "Overlapping tiles the object was detected in"),
    Column("tile_id", "", "Tile of the best detection"),
    Column("survey", "", "Survey of that tile"),
    Column("field", "", "Field of that tile"),
    Column("known_in", "", "Reference catalogues with a counterpart within the cross-match radius, comma-separated (empty: new)"),
    Column("known_as", "", "Name of the nearest counterpart in the first of those catalogues"),
)
"""The columns of every detection catalogue; the objects' measured properties follow."""
MEASUREMENT_COLUMNS = (
    Column("tile_id", "", "Tile measured"),
    Column("survey", "", "Survey of the tile"),
    Column("field", "", "Field of the tile"),
    *SKY_COLUMNS,
    Column("reject_probability", "", "Probability the tile should be rejected (the highest of its measurements')"),
)
"""The columns of every measurement catalogue; each quantity's value and ``<quantity>_err`` follow."""


@dataclasses.dataclass(frozen=True)
class SkyObject:
    """One detection (from a box, circle, segmentation or instance) at a sky position.

    ``lon_deg``/``lat_deg`` are in ``frame`` ("galactic" or "icrs"); ``radius_arcsec`` is 0 when unknown;
    ``properties`` are what the service measured on it (the unit in the name), ``outline`` its
    polygon on the sky (empty for compact objects).
    """

    tile_id: str
    lon_deg: float
    lat_deg: float
    frame: str
    radius_arcsec: float
    score: float
    label: str
    properties: Mapping[str, float] = dataclasses.field(default_factory=dict)
    outline: tuple[tile_pb2.SkyPosition, ...] = ()


def _instance_radius_arcsec(instance: results_pb2.Instance, tile: tile_pb2.ImageTile) -> float:
    box = instance.box
    return 0.5 * max(box.x_max - box.x_min, box.y_max - box.y_min) * tile.pixel_scale_arcsec


def detections_of(responses: Sequence[task_service_pb2.InferResponse], tiles: Mapping[str, tile_pb2.ImageTile]) -> list[SkyObject]:
    """Every detection in ``responses`` as a :class:`SkyObject` (instances get the radius of their box)."""
    found = []
    for response in responses:
        for result in response.results:
            detections = [*result.detections, *(d for s in result.segmentations for d in s.detections)]
            for d in detections:
                found.append(SkyObject(d.tile_id or result.tile_id, d.sky.lon_deg, d.sky.lat_deg,
                                       _FRAMES.get(d.sky.frame, "icrs"), d.radius_arcsec, float(d.score), d.label,
                                       dict(d.properties), tuple(d.outline)))
            for i in result.instances:
                tile_id = i.tile_id or result.tile_id
                found.append(SkyObject(tile_id, i.sky.lon_deg, i.sky.lat_deg, _FRAMES.get(i.sky.frame, "icrs"),
                                       _instance_radius_arcsec(i, tiles[tile_id]), float(i.score), i.label))
    return found


def merge_duplicates(objects: Sequence[SkyObject], positions: SkyPositions, radius_arcsec: float) -> list[tuple[int, int]]:
    """Merge objects of one label closer than ``radius_arcsec``, best score first.

    ``positions`` are the objects' positions (:meth:`SkyPositions.of` of them).

    Returns
    -------
    list of (int, int)
        Index of each kept object in ``objects`` and how many detections it absorbed (itself
        included), highest score first, ties by position: the order does not depend on the input order.
    """
    if not objects:
        return []
    glon, glat = positions.galactic.l.deg, positions.galactic.b.deg
    order = sorted(range(len(objects)), key=lambda i: (-objects[i].score, glon[i], glat[i], objects[i].tile_id))
    neighbours: dict[int, list[int]] = {i: [] for i in range(len(objects))}
    if radius_arcsec > 0 and len(objects) > 1:
        first, second, _, _ = search_around_sky(positions.galactic, positions.galactic, radius_arcsec * u.arcsec)
        for a, b in zip(first.tolist(), second.tolist()):
            if a != b and objects[a].label == objects[b].label:
                neighbours[a].append(b)
    absorbed: set[int] = set()
    kept = []
    for i in order:
        if i in absorbed:
            continue
        group = {i, *(j for j in neighbours[i] if j not in absorbed)}
        absorbed |= group
        kept.append((i, len(group)))
    return kept


def catalogue_rows(
    task: str,
    output_kind: int,
    responses: Sequence[task_service_pb2.InferResponse],
    tiles: Mapping[str, tile_pb2.ImageTile],
    *,
    duplicate_radius_arcsec: float,
) -> list[dict[str, object]]:
    """The rows of ``task``'s catalogue: merged detections, or one row per tile for measurements.

    A detection row has the :data:`DETECTION_COLUMNS`, its object's properties (NaN where it has
    none of a property another object has) and ``outline``, its polygon's (glon, glat) vertices in
    degrees; a measurement row has the :data:`MEASUREMENT_COLUMNS` and each quantity's value and
    ``<quantity>_err`` (NaN where the tile lacks it).
    """
    if output_kind == task_service_pb2.OUTPUT_KIND_MEASUREMENTS:
        return _measurement_rows(responses, tiles)
    objects = detections_of(responses, tiles)
    if not objects:
        return []
    positions = SkyPositions.of([o.lon_deg for o in objects], [o.lat_deg for o in objects], [o.frame for o in objects])
    merged = merge_duplicates(objects, positions, duplicate_radius_arcsec)
    properties = sorted({name for o in objects for name in o.properties})
    rows = []
    for number, (i, count) in enumerate(merged, start=1):
        obj, tile = objects[i], tiles[objects[i].tile_id]
        rows.append({"name": f"{task}-{number:05d}", **positions.columns(i), "radius_arcsec": obj.radius_arcsec,
                     "score": obj.score, "label": obj.label, "n_tiles": count, "tile_id": obj.tile_id,
                     "survey": tile.survey, "field": tile.field, "known_in": "", "known_as": "",
                     **{name: obj.properties.get(name, float("nan")) for name in properties},
                     "outline": _galactic_vertices(obj.outline)})
    return rows


def _galactic_vertices(outline: Sequence[tile_pb2.SkyPosition]) -> list[tuple[float, float]]:
    if not outline:
        return []
    vertices = SkyPositions.of([v.lon_deg for v in outline], [v.lat_deg for v in outline],
                               [_FRAMES.get(v.frame, "icrs") for v in outline])
    return [(round(float(lon), 7), round(float(lat), 7)) for lon, lat in zip(vertices.galactic.l.deg, vertices.galactic.b.deg)]


def _measurement_rows(responses: Sequence[task_service_pb2.InferResponse], tiles: Mapping[str, tile_pb2.ImageTile]) -> list[dict[str, object]]:
    by_tile: dict[str, dict[str, results_pb2.Measurement]] = {}
    for response in responses:
        for result in response.results:
            for m in result.measurements:
                by_tile.setdefault(m.tile_id or result.tile_id, {})[m.quantity] = m
    tile_ids = sorted(by_tile)
    centres = [tiles[t].center for t in tile_ids]
    positions = SkyPositions.of([c.lon_deg for c in centres], [c.lat_deg for c in centres],
                                [_FRAMES.get(c.frame, "icrs") for c in centres])
    quantities = sorted({q for measured in by_tile.values() for q in measured})
    rows = []
    for i, tile_id in enumerate(tile_ids):
        measured = by_tile[tile_id]
        row: dict[str, object] = {"tile_id": tile_id, "survey": tiles[tile_id].survey, "field": tiles[tile_id].field,
                                  **positions.columns(i),
                                  "reject_probability": max(m.reject_probability for m in measured.values())}
        for quantity in quantities:
            m = measured.get(quantity)
            row[quantity], row[f"{quantity}_err"] = (m.value, m.uncertainty) if m is not None else (float("nan"), float("nan"))
        rows.append(row)
    return rows


def catalogue_columns(output_kind: int, responses: Sequence[task_service_pb2.InferResponse]) -> list[Column]:
    """The columns of the catalogue of ``responses``: the fixed ones, then the measured ones with their units.

    Raises
    ------
    ValueError
        A quantity measured in two units, or a property whose name does not end with its unit.
    """
    results = [r for response in responses for r in response.results]
    if output_kind == task_service_pb2.OUTPUT_KIND_MEASUREMENTS:
        units: dict[str, set[str]] = {}
        for m in (m for r in results for m in r.measurements):
            units.setdefault(m.quantity, set()).add(m.unit)
        mixed = {q: sorted(u) for q, u in units.items() if len(u) > 1}
        if mixed:
            raise ValueError(f"quantities measured in several units: {mixed}")
        measured = []
        for quantity in sorted(units):
            unit = units[quantity].pop()
            measured += [Column(quantity, unit, f"{quantity} measured (NaN: not measured in this tile)"),
                         Column(f"{quantity}_err", unit, f"one-sigma uncertainty of {quantity} (0 when unknown)")]
        return [*MEASUREMENT_COLUMNS, *measured]
    detections = [d for r in results for d in (*r.detections, *(d for s in r.segmentations for d in s.detections))]
    properties = sorted({name for d in detections for name in d.properties})
    return [*DETECTION_COLUMNS, *(property_column(name, "measured by the service (NaN: not measured)") for name in properties)]


@dataclasses.dataclass(frozen=True)
class ReferenceCatalogue:
    """A catalogue of known objects to cross-match with: its name and its objects' names and positions."""

    name: str
    names: tuple[str, ...]
    positions: SkyCoord

    @classmethod
    def read(cls, name: str, path: Path) -> ReferenceCatalogue:
        """Read a table with a ``name`` column and ``glon``/``glat`` (Galactic) or ``ra``/``dec`` (ICRS) in degrees.

        Raises
        ------
        ValueError
            The table has neither pair of coordinate columns.
        """
        from astropy.table import Table

        table = Table.read(path)
        if {"glon", "glat"} <= set(table.colnames):
            positions = SkyCoord(np.asarray(table["glon"], float) * u.deg, np.asarray(table["glat"], float) * u.deg, frame="galactic")
        elif {"ra", "dec"} <= set(table.colnames):
            positions = SkyCoord(np.asarray(table["ra"], float) * u.deg, np.asarray(table["dec"], float) * u.deg, frame="icrs")
        else:
            raise ValueError(f"reference catalogue {name} ({path.name}): needs columns glon, glat or ra, dec (degrees); has {table.colnames}")
        names = tuple(str(n).strip() for n in table["name"]) if "name" in table.colnames else tuple(f"{name}-{i}" for i in range(len(table)))
        return cls(name, names, positions.galactic)


def cross_match(rows: Sequence[dict[str, object]], references: Sequence[ReferenceCatalogue], radius_arcsec: float) -> None:
    """Fill ``known_in`` and ``known_as`` of detection ``rows`` from ``references`` (in place).

    A row is known in a catalogue when that catalogue has an object within ``radius_arcsec`` of it;
    ``known_as`` names the nearest such object in the first catalogue (by name order) that has one.
    """
    for row in rows:
        row["known_in"], row["known_as"] = "", ""
    if not rows or radius_arcsec <= 0:
        return
    found = SkyCoord(np.array([r["glon"] for r in rows], float) * u.deg, np.array([r["glat"] for r in rows], float) * u.deg,
                     frame="galactic")
    known: list[list[str]] = [[] for _ in rows]
    for reference in sorted(references, key=lambda r: r.name):
        if len(reference.names) == 0:
            continue
        nearest, separation, _ = found.match_to_catalog_sky(reference.positions)
        for i, (j, distance) in enumerate(zip(np.atleast_1d(nearest), np.atleast_1d(separation.arcsec))):
            if distance <= radius_arcsec:
                if not known[i]:
                    rows[i]["known_as"] = reference.names[int(j)]
                known[i].append(reference.name)
    for row, names in zip(rows, known):
        row["known_in"] = ",".join(names)


def write_task_catalogue(
    task: str, output_kind: int, rows: Sequence[Mapping[str, object]], columns: Sequence[Column], directory: Path,
    meta: Mapping[str, str],
) -> list[Path]:
    """Write ``<directory>/<task>.fits``, ``.ecsv``, ``.csv`` and ``_galactic.reg``, ``_icrs.reg`` (DS9).

    ``columns`` are :func:`catalogue_columns` of the results the ``rows`` come from.
    """
    if output_kind == task_service_pb2.OUTPUT_KIND_MEASUREMENTS:
        return write_catalog(rows, columns, directory / task, meta=meta, label="tile_id")
    return write_catalog(rows, columns, directory / task, meta=meta, radius_arcsec="radius_arcsec", outline="outline",
                         label="name")
