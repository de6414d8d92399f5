"""Inference: test-time views x members, the combination rules, sky positions, merging, catalogues."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table
from regions import Regions

from nightshift.inclination.config import build_config
from nightshift.inclination.infer import CATALOG_COLUMNS, Predictor, merge_duplicates, tile_centre_sky, write_measurements
from nightshift.inclination.model import build_classifier, build_ensemble, build_regressor
from nightshift.inclination.simulate import simulate_galaxies


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    config = build_config(preset="tiny", augmented_copies=3)
    ensemble = build_ensemble([build_regressor(config=config, member=m) for m in range(2)],
                              [build_classifier(config=config, member=m) for m in range(2)], image_size=64)
    return Predictor(ensemble, config=config, uncertainty_scale=2.0)


def test_measure_combines_every_view_and_member(predictor: Predictor) -> None:
    tiles = simulate_galaxies(4, size=64, seed=3).images
    inclination, reject = predictor.predict_views(tiles)
    assert inclination.shape == reject.shape == (4, 3 * 2)
    assert ((inclination > 45) & (inclination < 90)).all() and ((reject >= 0) & (reject <= 1)).all()
    estimates = predictor.measure(tiles)
    np.testing.assert_allclose(estimates.inclination_deg, np.median(inclination, axis=1))
    np.testing.assert_allclose(estimates.spread_deg, np.maximum(inclination.std(axis=1), 0.1))
    np.testing.assert_allclose(estimates.uncertainty_deg, 2.0 * estimates.spread_deg)
    np.testing.assert_allclose(estimates.reject_probability, reject.mean(axis=1))


def test_no_tiles_give_no_estimates_and_wrong_sizes_are_refused(predictor: Predictor) -> None:
    assert len(predictor.measure(np.zeros((0, 3, 64, 64), np.float32))) == 0
    with pytest.raises(ValueError, match=r"expected \(n, 3, 64, 64\)"):
        predictor.measure(np.zeros((1, 3, 32, 32), np.float32))
    with pytest.raises(ValueError, match="uncertainty_scale = 0"):
        Predictor(predictor.ensemble, config=predictor.config, uncertainty_scale=0)


def _header(ra: float, dec: float, size: int = 64) -> str:
    from astropy.wcs import WCS

    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crpix = [10.0, 20.0]
    wcs.wcs.crval = [ra, dec]
    wcs.wcs.cdelt = [-1 / 3600, 1 / 3600]
    return wcs.to_header().tostring()


def test_tile_centre_from_wcs() -> None:
    ra, dec = tile_centre_sky(_header(150.0, 2.0), 64)
    # the centre pixel (31.5, 31.5) lies 22.5 px along x (towards lower RA: CDELT1 < 0) and 12.5 px north of CRPIX
    assert dec == pytest.approx(2.0 + 12.5 / 3600, abs=1e-6)
    assert ra == pytest.approx(150.0 - 22.5 / 3600 / np.cos(np.radians(2.0)), abs=1e-6)
    assert tile_centre_sky("", 64) is None


def test_duplicates_from_overlapping_tiles_are_merged_by_inverse_variance() -> None:
    rows = [
        {"name": "a", "ra": 10.0, "dec": 0.0, "inclination": 60.0, "inclination_err": 1.0, "reject_probability": 0.1, "n_tiles": 1},
        {"name": "b", "ra": 10.0 + 2 / 3600, "dec": 0.0, "inclination": 70.0, "inclination_err": 2.0, "reject_probability": 0.3, "n_tiles": 1},
        {"name": "c", "ra": 11.0, "dec": 0.0, "inclination": 80.0, "inclination_err": 1.0, "reject_probability": 0.5, "n_tiles": 1},
    ]
    merged = merge_duplicates(rows, radius_arcsec=5.0)
    assert [m["name"] for m in merged] == ["a", "c"]
    assert merged[0]["inclination"] == pytest.approx((60 / 1 + 70 / 4) / (1 + 1 / 4))
    assert merged[0]["n_tiles"] == 2 and merged[0]["reject_probability"] == pytest.approx(0.2)
    assert merged[1] == {**rows[2], "n_tiles": 1}
    assert merge_duplicates([], radius_arcsec=5.0) == []


def test_catalogue_files_carry_units(tmp_path) -> None:
    row = {"name": "g1", "ra": 10.0, "dec": -5.0, "inclination": 71.5, "inclination_err": 2.0, "reject_probability": 0.05, "n_tiles": 1}
    paths = write_measurements([row], tmp_path / "catalogue", meta={"MODEL": "inclinet:1"})
    assert [p.name for p in paths] == ["catalogue.fits", "catalogue.ecsv", "catalogue.csv", "catalogue_galactic.reg",
                                       "catalogue_icrs.reg"]
    for table in (Table.read(paths[0]), Table.read(paths[1])):
        assert table["inclination"].unit == u.deg and table["inclination"][0] == pytest.approx(71.5)
        assert table["inclination_err"].unit == u.deg and table.meta["MODEL"] == "inclinet:1"
        expected = SkyCoord(10.0 * u.deg, -5.0 * u.deg).galactic
        assert (table["glon"][0], table["glat"][0]) == (pytest.approx(expected.l.deg), pytest.approx(expected.b.deg))
    assert list(pd.read_csv(paths[2]).columns) == [c.name for c in CATALOG_COLUMNS]
    (point,) = Regions.read(paths[4], format="ds9")
    assert (point.center.ra.deg, point.center.dec.deg) == (pytest.approx(10.0), pytest.approx(-5.0))
