"""The night kit: simulate-night's mosaic, its truth and its tiling; score-night against that truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from nightshift.core.tiles import decode_tile, make_tile, window_origins
from nightshift.inclination.baseline import baseline_estimates
from nightshift.inclination.cli import main
from nightshift.inclination.night import FIELD, SURVEY, TRUTH_FILE, UNIT, score_night, simulate_night
from nightshift.inclination.simulate import BANDS, WAVELENGTH_UM, simulate_galaxies

GALAXIES, SEED = 6, 3  # a 3 x 2 mosaic: 4 accepted, 1 face-on, 1 rejected


@pytest.fixture(scope="module")
def kit(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("kit")
    summary = simulate_night(out, SEED, galaxies=GALAXIES)
    assert summary["fields"] == 1 and summary["files"] == len(BANDS) and summary["tiles"] == summary["truth_objects"] == GALAXIES
    return out


@pytest.fixture(scope="module")
def model():
    from nightshift.inclination.servicer import InclinationModel

    model = InclinationModel()
    model.load()
    yield model
    model.unload()


@pytest.fixture(scope="module")
def galaxies(model):
    """The service's own simulated galaxies of the kit's seed (as evaluate draws them)."""
    config = model.predictor.config
    return simulate_galaxies(GALAXIES, size=config.image_size, seed=SEED, split="test",
                             face_on_fraction=config.face_on_fraction, reject_fraction=config.reject_fraction)


def _ingest_windows(kit: Path) -> tuple[list[tuple[int, int, np.ndarray]], WCS, int]:
    """The tiles the ingest cuts from the kit's field: (x0, y0, pixels (bands, n, n)) row by row, the WCS, the window."""
    night = json.loads((kit / "night.json").read_text())
    tiling = night["survey"]["tiling"]
    (size,) = tiling["window_px"]
    planes = [fits.getdata(kit / "raw" / FIELD / f"{b['name']}.fits") for b in night["survey"]["bands"]]
    cube = np.stack(planes).astype(np.float32)
    wcs = WCS(fits.getheader(kit / "raw" / FIELD / "r.fits"))
    windows = [(x0, y0, cube[:, y0 : y0 + size, x0 : x0 + size])
               for y0 in window_origins(cube.shape[1], size, tiling["overlap_fraction"])
               for x0 in window_origins(cube.shape[2], size, tiling["overlap_fraction"])]
    return windows, wcs, size


def test_night_json_names_the_services_bands_and_a_tiling_of_its_tile_size(kit: Path, model) -> None:
    night = json.loads((kit / "night.json").read_text())
    assert set(night) == {"survey", "service"}
    survey = night["survey"]
    assert survey["name"] == SURVEY
    assert [b["name"] for b in survey["bands"]] == list(model.spec.bands)
    assert all(b["wavelength_um"] == WAVELENGTH_UM[b["name"]] and b["unit"] == UNIT for b in survey["bands"])
    assert survey["tiling"] == {"kind": "fits", "window_px": [model.spec.height], "overlap_fraction": 0.0, "output_px": 0}
    assert model.spec.height == model.spec.width
    assert night["service"] == {"duplicate_radius_arcsec": 0.0, "crossmatch_radius_arcsec": 0.0}


def test_raw_files_are_float32_mosaics_with_an_icrs_tan_wcs(kit: Path, model) -> None:
    size = model.spec.height
    assert sorted(p.name for p in (kit / "raw").iterdir()) == [FIELD]
    assert sorted(p.name for p in (kit / "raw" / FIELD).iterdir()) == sorted(f"{b}.fits" for b in BANDS)
    for band in BANDS:
        with fits.open(kit / "raw" / FIELD / f"{band}.fits") as hdus:
            header, data = hdus[0].header, hdus[0].data
            assert header["BITPIX"] == -32 and header["BUNIT"] == UNIT
            assert data.shape == (2 * size, 3 * size)  # 6 galaxies on 3 columns, no empty cell
            wcs = WCS(header)
            assert wcs.has_celestial and list(wcs.wcs.ctype) == ["RA---TAN", "DEC--TAN"] and wcs.wcs.radesys == "ICRS"


def test_ingest_windows_are_the_galaxy_cutouts_bit_for_bit_at_the_truth_positions(kit: Path, galaxies) -> None:
    windows, wcs, size = _ingest_windows(kit)
    truth = Table.read(kit / TRUTH_FILE, format="ascii.ecsv")
    assert len(windows) == len(truth) == len(galaxies) == GALAXIES
    for (x0, y0, pixels), row, image in zip(windows, truth, galaxies.images):
        assert (x0, y0) == (row["x_px"], row["y_px"])
        assert pixels.dtype == np.float32 and pixels.shape == (len(BANDS), size, size)
        np.testing.assert_array_equal(pixels, image)  # NaN where the cut-out has missing data
        # the tile centre the ingest computes: the window's 0-based centre pixel through the field's WCS
        centre = wcs.pixel_to_world(x0 + (size - 1) / 2, y0 + (size - 1) / 2).icrs
        assert centre.ra.deg == pytest.approx(row["ra"], abs=1e-9) and centre.dec.deg == pytest.approx(row["dec"], abs=1e-9)
    assert list(truth["label"]) == list(galaxies.labels)
    np.testing.assert_allclose(truth["inclination_deg"], galaxies.inclination_deg)
    np.testing.assert_allclose(truth["baseline_inclination_deg"], baseline_estimates(galaxies.images).inclination_deg)


def test_the_service_measures_ingested_tiles_as_its_own_simulated_galaxies(kit: Path, model, galaxies) -> None:
    windows, _, _ = _ingest_windows(kit)
    tiles = [decode_tile(make_tile(pixels, bands=list(BANDS), survey=SURVEY, field=FIELD), spec=model.spec)
             for _, _, pixels in windows]
    results = model.infer(tiles, model.serving_model())
    own = model.predictor.measure(galaxies.images)  # the path evaluate takes on the service's own simulations
    measured = [r.measurements[0] for r in results]
    assert all(m.quantity == "inclination" and m.unit == "deg" for m in measured)
    np.testing.assert_allclose([m.value for m in measured], own.inclination_deg, rtol=1e-6)
    np.testing.assert_allclose([m.uncertainty for m in measured], own.uncertainty_deg, rtol=1e-6)
    np.testing.assert_allclose([m.reject_probability for m in measured], own.reject_probability, rtol=1e-6, atol=1e-9)


def _catalogue(path: Path, truth: Table, *, value, uncertainty, reject, ra=None, dec=None) -> Path:
    """A measurement catalogue in the nightly flow's column layout, one row per tile, a column per quantity."""
    n = len(value)
    Table({"tile_id": [f"tile-{k}" for k in range(n)], "survey": [SURVEY] * n, "field": [FIELD] * n,
           "glon": np.zeros(n), "glat": np.zeros(n),
           "ra": truth["ra"][:n] if ra is None else ra, "dec": truth["dec"][:n] if dec is None else dec,
           "reject_probability": reject, "inclination": value, "inclination_err": uncertainty},
          units={"inclination": "deg", "inclination_err": "deg"}).write(path, overwrite=True)
    return path


def _perfect(truth: Table) -> dict:
    accepted = np.asarray(truth["label"]) == "accept"
    return dict(value=np.asarray(truth["inclination_deg"]), uncertainty=np.full(len(truth), 0.5), reject=(~accepted).astype(float))


def test_a_catalogue_made_from_the_truth_scores_perfectly(kit: Path, tmp_path: Path) -> None:
    truth = Table.read(kit / TRUTH_FILE, format="ascii.ecsv")
    figures = score_night(kit, _catalogue(tmp_path / "perfect.fits", truth, **_perfect(truth)))
    assert figures["truth"] == figures["rows"] == figures["galaxies"] == GALAXIES and figures["unmatched_rows"] == 0
    assert figures["accepted"] == int((truth["label"] == "accept").sum()) == 4
    assert figures["rms_deg"] == 0 and figures["mae_deg"] == 0
    assert figures["reject_auc"] == 1 and figures["coverage_1sigma"] == 1
    assert figures["baseline_rms_deg"] > 0


def test_shifted_noisy_or_missing_rows_score_worse(kit: Path, tmp_path: Path) -> None:
    truth = Table.read(kit / TRUTH_FILE, format="ascii.ecsv")
    perfect = _perfect(truth)
    # each row moved onto the next galaxy's cut-out: matched to the wrong truth
    order = np.roll(np.arange(len(truth)), 1)
    shifted = score_night(kit, _catalogue(tmp_path / "shifted.fits", truth, ra=truth["ra"][order], dec=truth["dec"][order], **perfect))
    assert shifted["galaxies"] == GALAXIES and shifted["rms_deg"] > 1 and shifted["reject_auc"] < 1
    # moved half a cut-out (1.5 arcmin) away: nothing matches
    away = score_night(kit, _catalogue(tmp_path / "away.fits", truth, dec=truth["dec"] + 0.025, **perfect))
    assert away["galaxies"] == 0 and away["unmatched_rows"] == GALAXIES and away["rms_deg"] is None
    # right place, values off by 5 deg with a 1-deg uncertainty
    noisy = {**perfect, "value": perfect["value"] + 5.0, "uncertainty": np.ones(len(truth))}
    off = score_night(kit, _catalogue(tmp_path / "off.fits", truth, **noisy))
    assert off["rms_deg"] == pytest.approx(5.0) and off["coverage_1sigma"] == 0
    # two rows missing
    missing = score_night(kit, _catalogue(tmp_path / "missing.fits", truth, **{k: v[:-2] for k, v in perfect.items()}))
    assert missing["galaxies"] == missing["rows"] == GALAXIES - 2 and missing["truth"] == GALAXIES


def test_reject_auc_agrees_with_sklearn(kit: Path, tmp_path: Path) -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    truth = Table.read(kit / TRUTH_FILE, format="ascii.ecsv")
    scores = np.random.default_rng(0).uniform(size=len(truth))
    figures = score_night(kit, _catalogue(tmp_path / "random.fits", truth, **{**_perfect(truth), "reject": scores}))
    assert figures["reject_auc"] == pytest.approx(metrics.roc_auc_score(np.asarray(truth["label"]) != "accept", scores))


def test_cli_simulate_night_then_score_night_print_one_json_line(tmp_path: Path, capsys) -> None:
    out = tmp_path / "kit"
    assert main(["simulate-night", "--output", str(out), "--seed", "1", "--galaxies", "2"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["survey"] == SURVEY and summary["tiles"] == summary["truth_objects"] == 2 and summary["seconds"] >= 0
    truth = Table.read(out / TRUTH_FILE, format="ascii.ecsv")
    catalogue = _catalogue(tmp_path / "c.fits", truth, **_perfect(truth))
    assert main(["score-night", "--kit", str(out), "--catalogue", str(catalogue)]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["truth"] == figures["galaxies"] == 2 and figures["rms_deg"] == 0
