"""Catalogues: duplicates merged on the sky, measured properties and outlines, measurement columns, the same
bytes for the same results, every file read by astropy, pandas and astropy regions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table
from regions import PointSkyRegion, PolygonSkyRegion, Regions

from nightshift.orchestration.catalogues import (ReferenceCatalogue, SkyObject, SkyPositions, catalogue_columns, catalogue_rows,
                                                 cross_match, merge_duplicates, write_task_catalogue)
from nightshift.v1 import results_pb2, task_service_pb2, tile_pb2

_GAL = tile_pb2.SKY_FRAME_GALACTIC


def _tile(tile_id: str) -> tile_pb2.ImageTile:
    return tile_pb2.ImageTile(tile_id=tile_id, survey="glimpse", field="l030", pixel_scale_arcsec=1.2,
                              center=tile_pb2.SkyPosition(lon_deg=30.0, lat_deg=0.0, frame=_GAL))


def _response(tile_id: str, *detections: tuple[float, float, float, str]) -> task_service_pb2.InferResponse:
    result = results_pb2.TileResult(tile_id=tile_id)
    for lon, lat, score, label in detections:
        result.detections.add(tile_id=tile_id, sky=tile_pb2.SkyPosition(lon_deg=lon, lat_deg=lat, frame=_GAL),
                              radius_arcsec=20.0, score=score, label=label)
    return task_service_pb2.InferResponse(results=[result])


def test_detections_closer_than_the_radius_with_one_label_merge_into_the_best() -> None:
    arcsec = 1 / 3600
    objects = [SkyObject("a", 30.0, 0.0, "galactic", 10, 0.6, "bubble"),
               SkyObject("b", 30.0 + 5 * arcsec, 0.0, "galactic", 10, 0.9, "bubble"),
               SkyObject("b", 30.0 + 5 * arcsec, 0.0, "galactic", 10, 0.8, "hii"),
               SkyObject("c", 30.0 + 60 * arcsec, 0.0, "galactic", 10, 0.7, "bubble")]
    positions = SkyPositions.of([o.lon_deg for o in objects], [o.lat_deg for o in objects], [o.frame for o in objects])
    assert merge_duplicates(objects, positions, radius_arcsec=10.0) == [(1, 2), (2, 1), (3, 1)]


def test_icrs_and_galactic_positions_of_one_object_merge() -> None:
    icrs = SkyPositions.of([30.0], [0.0], ["galactic"])
    objects = [SkyObject("a", 30.0, 0.0, "galactic", 0, 0.5, "x"),
               SkyObject("b", float(icrs.ra_deg[0]), float(icrs.dec_deg[0]), "icrs", 0, 0.4, "x")]
    positions = SkyPositions.of([o.lon_deg for o in objects], [o.lat_deg for o in objects], [o.frame for o in objects])
    assert merge_duplicates(objects, positions, radius_arcsec=1.0) == [(0, 2)]


def test_detection_rows_do_not_depend_on_the_order_of_results() -> None:
    tiles = {t: _tile(t) for t in ("a", "b")}
    responses = [_response("a", (30.0, 0.0, 0.6, "bubble")), _response("b", (30.0001, 0.0, 0.9, "bubble"), (30.5, 0.1, 0.3, "bubble"))]
    rows = catalogue_rows("bubbles", task_service_pb2.OUTPUT_KIND_DETECTIONS, responses, tiles, duplicate_radius_arcsec=30)
    assert [(r["name"], r["n_tiles"], r["tile_id"], r["score"] == pytest.approx(0.9)) for r in rows][:1] == [("bubbles-00001", 2, "b", True)]
    assert len(rows) == 2
    assert catalogue_rows("bubbles", task_service_pb2.OUTPUT_KIND_DETECTIONS, responses[::-1], tiles,
                          duplicate_radius_arcsec=30) == rows


def test_measurements_are_one_row_per_tile_at_its_centre_with_a_column_per_quantity(tmp_path: Path) -> None:
    results = [results_pb2.TileResult(tile_id=t) for t in ("a", "b")]
    for quantity, value in (("irac4.noise", 2.0), ("irac4.background", 60.0)):
        results[0].measurements.add(tile_id="a", quantity=quantity, value=value, uncertainty=0.5, unit="MJy/sr", reject_probability=0.2)
    results[1].measurements.add(tile_id="b", quantity="irac4.noise", value=3.0, unit="MJy/sr", reject_probability=0.4)
    responses = [task_service_pb2.InferResponse(results=results)]
    kind = task_service_pb2.OUTPUT_KIND_MEASUREMENTS
    rows = catalogue_rows("tilestats", kind, responses, {t: _tile(t) for t in ("a", "b")}, duplicate_radius_arcsec=0)
    assert [(r["tile_id"], r["irac4.noise"], r["irac4.background_err"], r["reject_probability"], r["glon"]) for r in rows][0] == \
        ("a", 2.0, 0.5, pytest.approx(0.2), 30.0)
    assert np.isnan(rows[1]["irac4.background"]) and rows[1]["irac4.noise"] == 3.0
    columns = catalogue_columns(kind, responses)
    first = [p.read_bytes() for p in write_task_catalogue("tilestats", kind, rows, columns, tmp_path / "1", {"RUNID": "x"})]
    second = [p.read_bytes() for p in write_task_catalogue("tilestats", kind, rows, columns, tmp_path / "2", {"RUNID": "x"})]
    assert first == second and len(first) == 5
    table = Table.read(tmp_path / "1" / "tilestats.ecsv")
    assert table["irac4.noise"].unit == u.MJy / u.sr and table["irac4.noise_err"].unit == u.MJy / u.sr
    assert "value" not in table.colnames and "unit" not in table.colnames
    assert list(pd.read_csv(tmp_path / "1" / "tilestats.csv")["irac4.noise"]) == [2.0, 3.0]
    assert [type(r) for r in Regions.read(tmp_path / "1" / "tilestats_icrs.reg", format="ds9")] == [PointSkyRegion, PointSkyRegion]


def test_a_quantity_in_two_units_is_refused() -> None:
    result = results_pb2.TileResult(tile_id="a")
    result.measurements.add(tile_id="a", quantity="inclination", value=1.0, unit="deg")
    result.measurements.add(tile_id="b", quantity="inclination", value=1.0, unit="rad")
    with pytest.raises(ValueError, match=r"several units: \{'inclination': \['deg', 'rad'\]\}"):
        catalogue_columns(task_service_pb2.OUTPUT_KIND_MEASUREMENTS, [task_service_pb2.InferResponse(results=[result])])


def test_segmentation_objects_keep_their_properties_and_outlines_in_every_file(tmp_path: Path) -> None:
    outline = [(30.00, 0.00), (30.02, 0.00), (30.02, 0.01), (30.00, 0.01)]
    icrs_outline = SkyCoord([v[0] for v in outline] * u.deg, [v[1] for v in outline] * u.deg, frame="galactic").icrs
    result = results_pb2.TileResult(tile_id="a")
    segmentation = result.segmentations.add(tile_id="a")
    segmentation.detections.add(
        tile_id="a", label="filament", score=0.8, sky=tile_pb2.SkyPosition(lon_deg=30.01, lat_deg=0.005, frame=_GAL),
        properties={"skeleton_length_px": 42.5, "area_px2": 120.0, "mean_nh2_per_cm2": 2e22},
        outline=[tile_pb2.SkyPosition(lon_deg=float(c.ra.deg), lat_deg=float(c.dec.deg), frame=tile_pb2.SKY_FRAME_ICRS)
                 for c in icrs_outline])
    segmentation.detections.add(tile_id="a", label="filament", score=0.6, properties={"area_px2": 30.0},
                                sky=tile_pb2.SkyPosition(lon_deg=30.5, lat_deg=0.2, frame=_GAL))
    responses = [task_service_pb2.InferResponse(results=[result])]
    kind = task_service_pb2.OUTPUT_KIND_SEGMENTATION
    rows = catalogue_rows("filaments", kind, responses, {"a": _tile("a")}, duplicate_radius_arcsec=10)
    paths = write_task_catalogue("filaments", kind, rows, catalogue_columns(kind, responses), tmp_path, {"MODEL": "filaments-unet"})
    assert [p.name for p in paths] == ["filaments.fits", "filaments.ecsv", "filaments.csv", "filaments_galactic.reg", "filaments_icrs.reg"]
    for table in (Table.read(paths[0]), Table.read(paths[1])):
        assert table["skeleton_length_px"].unit == u.pix and table["area_px2"].unit == u.pix**2
        assert table["mean_nh2_per_cm2"].unit == u.cm**-2 and table.meta["MODEL"] == "filaments-unet"
        assert list(table["area_px2"]) == [120.0, 30.0] and np.isnan(np.ma.filled(table["skeleton_length_px"], np.nan)[1])
    assert list(pd.read_csv(paths[2])["skeleton_length_px"].fillna(-1)) == [42.5, -1]
    for path, frame in zip(paths[3:], ("galactic", "icrs")):
        polygon, point = Regions.read(path, format="ds9")
        assert isinstance(polygon, PolygonSkyRegion) and isinstance(point, PointSkyRegion)
        assert polygon.meta["text"] == "filaments-00001" and polygon.vertices.frame.name == frame
        expected = icrs_outline.transform_to(frame)
        assert np.all(polygon.vertices.separation(expected).to_value(u.arcsec) < 0.01)


def _reference(tmp_path: Path, catalogue: str, **columns: list[object]) -> ReferenceCatalogue:
    path = tmp_path / f"{catalogue}.ecsv"
    Table(columns).write(path, format="ascii.ecsv")
    return ReferenceCatalogue.read(catalogue, path)


def test_detections_are_cross_matched_with_every_reference_catalogue_within_the_radius(tmp_path: Path) -> None:
    tiles = {t: _tile(t) for t in ("a", "b")}
    responses = [_response("a", (30.0, 0.0, 0.9, "cluster")), _response("b", (31.0, 0.5, 0.8, "cluster"), (40.0, 0.0, 0.7, "cluster"))]
    rows = catalogue_rows("clusters", task_service_pb2.OUTPUT_KIND_DETECTIONS, responses, tiles, duplicate_radius_arcsec=30)
    galactic = _reference(tmp_path, "psz2", name=["PSZ2 G030.00+00.00", "PSZ2 G031.00+00.55"], glon=[30.0, 31.0], glat=[0.001, 0.55])
    near = SkyPositions.of([30.0], [0.0], ["galactic"])  # the same object, given in ICRS
    icrs = _reference(tmp_path, "mcxc", name=["MCXC J1846.0-0237"], ra=[float(near.ra_deg[0])], dec=[float(near.dec_deg[0])])
    cross_match(rows, [icrs, galactic], radius_arcsec=120.0)
    known = {(r["glon"], r["glat"]): (r["known_in"], r["known_as"]) for r in rows}
    assert known[(30.0, 0.0)] == ("mcxc,psz2", "MCXC J1846.0-0237")  # catalogues in name order; the first names it
    assert known[(31.0, 0.5)] == ("", "")  # 180 arcsec from PSZ2 G031.00+00.55: beyond the radius, new
    assert known[(40.0, 0.0)] == ("", "")
    write_task_catalogue("clusters", task_service_pb2.OUTPUT_KIND_DETECTIONS, rows,
                         catalogue_columns(task_service_pb2.OUTPUT_KIND_DETECTIONS, responses), tmp_path / "out", {})
    assert list(Table.read(tmp_path / "out" / "clusters.fits")["known_in"].filled("")) == ["mcxc,psz2", "", ""]


def test_a_reference_catalogue_without_coordinates_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="glon, glat or ra, dec"):
        _reference(tmp_path, "bad", name=["x"], l=[1.0])
