"""Catalogues: duplicates merged on the sky, measurement rows, the same bytes for the same results."""

from __future__ import annotations

from pathlib import Path

import pytest

from nightshift.orchestration.catalogues import SkyObject, SkyPositions, catalogue_rows, merge_duplicates, write_task_catalogue
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


def test_measurements_are_one_row_per_tile_and_quantity_at_the_tile_centre(tmp_path: Path) -> None:
    result = results_pb2.TileResult(tile_id="a")
    for quantity, value in (("irac4.noise", 2.0), ("irac4.background", 60.0)):
        result.measurements.add(tile_id="a", quantity=quantity, value=value, unit="MJy/sr")
    rows = catalogue_rows("tilestats", task_service_pb2.OUTPUT_KIND_MEASUREMENTS, [task_service_pb2.InferResponse(results=[result])],
                          {"a": _tile("a")}, duplicate_radius_arcsec=0)
    assert [(r["quantity"], r["value"], r["glon"], r["glat"]) for r in rows] == [("irac4.background", 60.0, 30.0, 0.0),
                                                                                   ("irac4.noise", 2.0, 30.0, 0.0)]
    first = [p.read_bytes() for p in write_task_catalogue("tilestats", task_service_pb2.OUTPUT_KIND_MEASUREMENTS, rows, tmp_path / "1", {"RUNID": "x"})]
    second = [p.read_bytes() for p in write_task_catalogue("tilestats", task_service_pb2.OUTPUT_KIND_MEASUREMENTS, rows, tmp_path / "2", {"RUNID": "x"})]
    assert first == second and len(first) == 3
