"""Catalogue files read by astropy, pandas and astropy regions: units, provenance, one shape per object."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table
from regions import CircleSkyRegion, PointPixelRegion, PointSkyRegion, PolygonPixelRegion, PolygonSkyRegion, Regions

from nightshift.core.catalog import Column, property_column, write_catalog

COLUMNS = [Column("name"), Column("glon", "deg", "Galactic longitude"), Column("glat", "deg"), Column("radius", "arcsec"),
           Column("score"), Column("known_in")]
ROWS = [{"name": "a", "glon": 30.1, "glat": -0.2, "radius": 45.0, "score": 0.9, "known_in": "PSZ2,MCXC"},
        {"name": "b", "glon": 31.0, "glat": 0.1, "radius": 0.0, "score": 0.6, "known_in": ""}]
META = {"MODEL": "bubbles-ssd", "MODELVER": "3", "THRESH": 0.5}


def test_every_file_reads_with_its_standard_tool(tmp_path) -> None:
    fits, ecsv, csv, galactic, icrs = write_catalog(ROWS, COLUMNS, tmp_path / "night" / "bubbles", meta=META,
                                                    radius_arcsec="radius", label="name")
    assert [p.name for p in (fits, ecsv, csv, galactic, icrs)] == [
        "bubbles.fits", "bubbles.ecsv", "bubbles.csv", "bubbles_galactic.reg", "bubbles_icrs.reg"]
    for table in (Table.read(fits), Table.read(ecsv)):
        assert list(table["glon"]) == [30.1, 31.0] and list(np.ma.filled(table["known_in"], "")) == ["PSZ2,MCXC", ""]
        assert table["radius"].unit == u.arcsec and table["glon"].unit == u.deg
        assert table.meta["MODEL"] == "bubbles-ssd" and table.meta["MODELVER"] == "3" and table.meta["FRAME"] == "galactic"
        assert table.meta["THRESH"] == 0.5
    frame = pd.read_csv(csv, keep_default_na=False)
    assert list(frame.columns) == [c.name for c in COLUMNS]
    assert list(frame["glon"]) == [30.1, 31.0] and list(frame["known_in"]) == ["PSZ2,MCXC", ""]


def test_regions_in_galactic_and_icrs_circles_only_with_a_radius(tmp_path) -> None:
    *_, galactic, icrs = write_catalog(ROWS, COLUMNS, tmp_path / "c", meta=META, radius_arcsec="radius", label="name")
    in_galactic, in_icrs = Regions.read(galactic, format="ds9"), Regions.read(icrs, format="ds9")
    assert [type(r) for r in in_galactic] == [CircleSkyRegion, PointSkyRegion] == [type(r) for r in in_icrs]
    assert in_galactic[0].radius.to_value(u.arcsec) == pytest.approx(45.0)
    assert in_galactic[0].meta["text"] == "a" and in_icrs[1].meta["text"] == "b"
    assert in_galactic[0].center.frame.name == "galactic" and in_icrs[0].center.frame.name == "icrs"
    expected = SkyCoord(30.1 * u.deg, -0.2 * u.deg, frame="galactic").icrs
    assert in_icrs[0].center.separation(expected).to_value(u.arcsec) < 1e-3


def test_outlines_are_polygons_and_positions_without_sky_are_left_out(tmp_path) -> None:
    rows = [{**ROWS[0], "outline": [(30.0, -0.2), (30.2, -0.2), (30.1, -0.1)]},
            {**ROWS[1], "outline": []},
            {**ROWS[1], "name": "c", "glon": float("nan"), "outline": []}]
    *_, galactic, icrs = write_catalog(rows, COLUMNS, tmp_path / "f", meta=META, outline="outline", label="name")
    for path, frame in ((galactic, "galactic"), (icrs, "icrs")):
        shapes = Regions.read(path, format="ds9")
        assert [type(r) for r in shapes] == [PolygonSkyRegion, PointSkyRegion]
        expected = SkyCoord([30.0, 30.2, 30.1] * u.deg, [-0.2, -0.2, -0.1] * u.deg, frame="galactic").transform_to(frame)
        assert np.all(shapes[0].vertices.separation(expected).to_value(u.arcsec) < 1e-3)


def test_image_coordinates_without_a_wcs(tmp_path) -> None:
    columns = [Column("id"), Column("x_px", "pix"), Column("y_px", "pix")]
    rows = [{"id": 1, "x_px": 0.0, "y_px": 4.0, "outline": [(0, 3), (2, 3), (1, 5)]}, {"id": 2, "x_px": 9.0, "y_px": 9.0, "outline": []}]
    *tables, image = write_catalog(rows, columns, tmp_path / "m", meta=META, frame="image", lon="x_px", lat="y_px",
                                   outline="outline", label="id")
    assert image.name == "m_image.reg" and len(tables) == 3
    shapes = Regions.read(image, format="ds9")
    assert [type(r) for r in shapes] == [PolygonPixelRegion, PointPixelRegion]
    assert list(shapes[0].vertices.x) == [0, 2, 1] and (shapes[1].center.x, shapes[1].center.y) == (9.0, 9.0)
    assert "image" in image.read_text().splitlines()[1:3]


def test_empty_catalogue_still_has_its_columns_and_frames(tmp_path) -> None:
    fits, ecsv, csv, galactic, icrs = write_catalog([], COLUMNS, tmp_path / "empty", meta=META)
    table = Table.read(fits)
    assert len(table) == 0 and table.colnames == [c.name for c in COLUMNS]
    assert len(Table.read(ecsv)) == 0 and list(pd.read_csv(csv).columns) == table.colnames
    assert len(Regions.read(galactic, format="ds9")) == 0 and "icrs" in icrs.read_text()


def test_property_columns_take_their_unit_from_their_name() -> None:
    assert property_column("skeleton_length_px") == Column("skeleton_length_px", "pix")
    assert property_column("area_px2").unit == "pix2" and property_column("mean_nh2_per_cm2").unit == "cm-2"
    with pytest.raises(ValueError, match="property 'mass': its name must end with its unit"):
        property_column("mass")


def test_bad_arguments(tmp_path) -> None:
    with pytest.raises(ValueError, match="frame 'fk4'"):
        write_catalog(ROWS, COLUMNS, tmp_path / "x", meta=META, frame="fk4")
    with pytest.raises(ValueError, match=r"columns \['ra'\] are not in"):
        write_catalog(ROWS, COLUMNS, tmp_path / "x", meta=META, lon="ra")
    with pytest.raises(ValueError, match=r"meta keys \['THRESHOLD'\]"):
        write_catalog(ROWS, COLUMNS, tmp_path / "x", meta={"THRESHOLD": 0.5})
