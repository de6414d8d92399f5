"""Field inference: windows to field and sky, merging across windows, catalogues."""

import numpy as np
import pandas as pd
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table
from regions import CircleSkyRegion, Regions

from nightshift.bubbles.baseline import RingTemplateDetector
from nightshift.bubbles.config import preset
from nightshift.bubbles.infer import FieldDetection, circle_of_box, detect_field, merge_on_sky, write_detection_catalogue
from nightshift.bubbles.windows import car_header
from nightshift.core.catalog import DETECTION_COLUMNS


def test_circle_of_box() -> None:
    assert circle_of_box([10, 20, 36, 46]) == (23.0, 33.0, pytest.approx(10.0))


def test_merge_on_sky_keeps_the_best_of_overlapping_detections() -> None:
    same = [FieldDetection(0, 0, 10, 30.0, 0.0, 20.0, 0.6), FieldDetection(0, 0, 10, 30.0 + 2 / 3600, 0.0, 21.0, 0.9),
            FieldDetection(0, 0, 10, 30.1, 0.0, 20.0, 0.7)]
    kept = merge_on_sky(same, 0.3)
    assert [d.score for d in kept] == [0.9, 0.7]
    assert merge_on_sky([], 0.3) == []


def test_detect_field_maps_a_ring_to_its_field_and_sky_position(tmp_path) -> None:
    config = preset("tiny").with_overrides({"window_px": "[300]"})
    yy, xx = np.mgrid[:384, :384]
    distance = np.hypot(xx - 200.0, yy - 150.0)
    pixels = np.stack([10 + 40 * np.exp(-0.5 * ((distance - 30) / 3) ** 2), np.full((384, 384), 5.0)]).astype(np.float32)
    header = car_header(30.0, 0.1, (384, 384), 1.2)
    found = detect_field(pixels, header, RingTemplateDetector(), config, min_score=0.5)
    assert found, "the ring is found"
    best = found[0]
    assert (best.x_px, best.y_px) == (pytest.approx(200, abs=3), pytest.approx(150, abs=3))
    assert best.radius_arcsec == pytest.approx(best.radius_px * 1.2) and abs(best.radius_px - 30) < 8
    assert best.glat_deg == pytest.approx(0.1 + (150 - 191.5) * 1.2 / 3600, abs=3 * 1.2 / 3600)
    files = write_detection_catalogue([{"field": "f", "glon": d.glon_deg, "glat": d.glat_deg, "radius_arcsec": d.radius_arcsec,
                                        "x_px": d.x_px, "y_px": d.y_px, "radius_px": d.radius_px, "score": d.score} for d in found],
                                      tmp_path / "cat", meta={"MODEL": "ring-template", "THRESH": 0.5})
    assert [f.name for f in files] == ["cat.fits", "cat.ecsv", "cat.csv", "cat_galactic.reg", "cat_icrs.reg"]
    table = Table.read(files[0])
    assert table.meta["MODEL"] == "ring-template" and table["radius_arcsec"].unit == u.arcsec
    assert table.colnames[:len(DETECTION_COLUMNS)] == [c.name for c in DETECTION_COLUMNS]  # the night's columns first
    icrs = SkyCoord(table["glon"], table["glat"], frame="galactic").icrs
    assert np.allclose(table["ra"], icrs.ra.deg, atol=1e-6) and table["name"][0] == "bubbles-00001"
    assert len(pd.read_csv(files[2])) == len(found)
    circles = Regions.read(files[3], format="ds9")
    assert len(circles) == len(found) and all(isinstance(c, CircleSkyRegion) for c in circles)
    assert detect_field(np.zeros((2, 100, 100), np.float32), header, RingTemplateDetector(), config) == []
