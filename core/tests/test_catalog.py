"""Catalogue files: FITS and CSV keep units, the region file has one shape per object."""

from __future__ import annotations

import pytest
from astropy.table import Table

from nightshift.core.catalog import Column, write_catalog

COLUMNS = [Column("glon", "deg", "Galactic longitude"), Column("glat", "deg"), Column("radius", "arcsec"), Column("score")]
ROWS = [{"glon": 30.1, "glat": -0.2, "radius": 45.0, "score": 0.9}, {"glon": 31.0, "glat": 0.1, "radius": 90.0, "score": 0.6}]


def test_fits_csv_and_regions(tmp_path) -> None:
    fits, csv, regions = write_catalog(ROWS, COLUMNS, tmp_path / "night" / "bubbles", radius_arcsec="radius", label="score")
    for path, fmt in ((fits, "fits"), (csv, "ascii.ecsv")):
        table = Table.read(path, format=fmt)
        assert list(table["glon"]) == [30.1, 31.0]
        assert str(table["radius"].unit) == "arcsec" and str(table["glon"].unit) == "deg"
    lines = regions.read_text().splitlines()
    assert lines[1] == "galactic"
    assert lines[2] == 'circle(30.100000,-0.200000,45.00") # text={0.9}'


def test_empty_catalogue_still_has_its_columns(tmp_path) -> None:
    fits, _, regions = write_catalog([], COLUMNS, tmp_path / "empty")
    table = Table.read(fits)
    assert len(table) == 0 and table.colnames == ["glon", "glat", "radius", "score"]
    assert regions.read_text().splitlines() == ["# Region file format: DS9 version 4.1", "galactic"]


def test_points_without_radius_and_bad_arguments(tmp_path) -> None:
    *_, regions = write_catalog(ROWS[:1], COLUMNS, tmp_path / "points")
    assert regions.read_text().splitlines()[2] == "point(30.100000,-0.200000)"
    with pytest.raises(ValueError, match="frame 'fk4'"):
        write_catalog(ROWS, COLUMNS, tmp_path / "x", frame="fk4")
    with pytest.raises(ValueError, match=r"columns \['ra'\] are not in"):
        write_catalog(ROWS, COLUMNS, tmp_path / "x", lon="ra")
