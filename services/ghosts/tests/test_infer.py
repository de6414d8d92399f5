"""Inference post-processing: field merging, image findings, sky positions, catalogues."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from regions import Regions

from nightshift.core.catalog import DETECTION_COLUMNS
from nightshift.ghosts.artefacts import Artefact
from nightshift.ghosts.config import preset
from nightshift.ghosts.infer import Detector, catalogue_row, findings, merge_field, sky_position, write_instance_catalogue
from nightshift.ghosts.model import GhostDetector


def square(x0: int, y0: int, side: int = 20) -> np.ndarray:
    mask = np.zeros((400, 400), bool)
    mask[y0 : y0 + side, x0 : x0 + side] = True
    return mask


def wcs_header() -> str:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [30.0, -20.0]
    wcs.wcs.crpix = [200.5, 200.5]  # 1-based: pixel (199.5, 199.5) 0-based
    wcs.wcs.cdelt = [-20 / 3600, 20 / 3600]
    return wcs.to_header().tostring()


def test_merge_field_drops_duplicates_of_the_same_class() -> None:
    a = Artefact("bright", square(100, 100), 0.9)
    a_again = Artefact("bright", square(101, 100), 0.7)
    other_class = Artefact("faint", square(100, 100), 0.8)
    merged = merge_field([[a], [a_again, other_class]])
    assert [(m.label, m.score) for m in merged] == [("bright", 0.9), ("faint", 0.8)]
    assert merge_field([]) == []


def test_findings_use_the_threshold() -> None:
    artefacts = [Artefact("rays", square(100, 100), 0.5)]
    assert findings(artefacts, score_threshold=0.8).has_artefacts is False
    found = findings(artefacts, score_threshold=0.4)
    assert found.has_artefacts and found.ccds


def test_sky_position_from_the_wcs() -> None:
    assert sky_position("", 1, 1) is None
    ra, dec = sky_position(wcs_header(), 199.5, 199.5)
    assert (ra, dec) == pytest.approx((30.0, -20.0))
    assert fits.Header.fromstring(wcs_header())["CTYPE1"] == "RA---TAN"


def test_catalogue_files(tmp_path: Path) -> None:
    row = catalogue_row("tile-1", Artefact("faint", square(190, 190)), wcs_header())
    assert row["ra"] == pytest.approx(30.0, abs=0.01) and row["area_px2"] == 400
    files = write_instance_catalogue([row], tmp_path / "cat", meta={"MODEL": "ghosts-maskrcnn", "THRESH": 0.5})
    assert [f.name for f in files] == ["cat.fits", "cat.ecsv", "cat.csv", "cat_galactic.reg", "cat_icrs.reg"]
    table = Table.read(files[1])
    assert table["ra"].unit == u.deg and (table.meta["MODEL"], table.meta["FRAME"]) == ("ghosts-maskrcnn", "icrs")
    assert list(pd.read_csv(files[2])["label"]) == ["faint"]
    assert table.colnames[:len(DETECTION_COLUMNS)] == [c.name for c in DETECTION_COLUMNS]  # the night's columns first
    assert table["name"][0] == "ghosts-00001" and np.isfinite(table["glon"][0])
    (point,) = Regions.read(files[4], format="ds9")
    assert point.center.ra.deg == pytest.approx(row["ra"]) and point.meta["text"] == "faint"
    assert write_instance_catalogue([], tmp_path / "empty", meta={})


def test_detector_batches_and_empty_input() -> None:
    detector = Detector(GhostDetector(preset("tiny")), batch_size=2)
    assert detector.predict([], score_threshold=0.5) == []
    found = detector.predict([np.full((3, 400, 400), 40.0, np.float32)] * 3, score_threshold=0.0)
    assert len(found) == 3 and all(a.mask.shape == (400, 400) for image in found for a in image)
