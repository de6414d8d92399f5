"""The night kit: simulate-night writes a night the ingest service tiles into accepted tiles; score-night is honest."""

import json

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from nightshift.bubbles.cli import build_parser, main
from nightshift.bubbles.night import REFERENCE_FILE, TRUTH_STEM, score_night, sky_coverage
from nightshift.bubbles.realdata import CATALOGUE_FILE, DEFAULT_REAL_DIR
from nightshift.bubbles.servicer import BubblesModel
from nightshift.bubbles.windows import plan_windows
from nightshift.core.tiles import window_origins


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    """One 768-pixel field of night seed 0 (5 bubbles, 4 clear) written by the command line."""
    directory = tmp_path_factory.mktemp("kit")
    assert main(["simulate-night", "--output", str(directory), "--seed", "0", "--fields", "1"]) == 0
    return directory


def test_help_lists_the_night_commands() -> None:
    help_text = build_parser().parser.format_help()
    assert "simulate-night" in help_text and "score-night" in help_text


def test_simulate_night_writes_a_night_the_service_accepts(kit, capsys) -> None:
    night = json.loads((kit / "night.json").read_text())
    assert set(night) == {"survey", "service"}
    survey, service = night["survey"], night["service"]
    spec = BubblesModel().spec
    assert survey["name"] == "glimpse"
    assert [b["name"] for b in survey["bands"]] == list(spec.bands)
    assert all(b["unit"] == "MJy/sr" and b["wavelength_um"] > 0 for b in survey["bands"])
    tiling = survey["tiling"]
    assert tiling["kind"] == "fits" and tiling["output_px"] == spec.height == spec.width
    assert 0 < service["duplicate_radius_arcsec"] < 120 and 0 < service["crossmatch_radius_arcsec"] <= service["duplicate_radius_arcsec"]

    fields = sorted(p for p in (kit / "raw").iterdir())
    assert len(fields) == 1
    assert sorted(p.name for p in fields[0].iterdir()) == ["irac4.fits", "mips24.fits"]
    shapes, tiles = set(), 0
    for band in ("irac4", "mips24"):
        with fits.open(fields[0] / f"{band}.fits") as hdus:
            header, data = hdus[0].header, hdus[0].data
        wcs = WCS(header)
        assert wcs.has_celestial and wcs.wcs.ctype[0].startswith("GLON") and header["BUNIT"] == "MJy/sr"
        assert data.dtype.kind == "f" and np.isfinite(data).all()
        shapes.add(data.shape)
    (height, width), = shapes
    # every window fits the field and is resampled to the accepted size; the windows are the service's own
    for size in tiling["window_px"]:
        assert size <= min(height, width)
        tiles += len(window_origins(height, size, tiling["overlap_fraction"])) * len(window_origins(width, size, tiling["overlap_fraction"]))
    assert tiles == len(plan_windows((height, width), tiling["window_px"], tiling["overlap_fraction"])) == 129

    truth = Table.read(kit / TRUTH_STEM.with_suffix(".fits"))
    assert len(truth) == 5 and int(np.sum(truth["clear"])) == 4
    x, y = WCS(fits.getheader(fields[0] / "irac4.fits")).world_to_pixel_values(truth["glon"], truth["glat"])
    assert np.allclose(x, truth["x_px"], atol=1e-6) and np.allclose(y, truth["y_px"], atol=1e-6)
    if (DEFAULT_REAL_DIR / CATALOGUE_FILE).exists():
        reference = Table.read(kit / REFERENCE_FILE)
        assert {"name", "glon", "glat"} <= set(reference.colnames) and len(reference) > 1000
        assert len(set(reference["name"])) == len(reference)


def test_simulate_night_summary_line(tmp_path, capsys) -> None:
    assert main(["simulate-night", "--output", str(tmp_path), "--seed", "0", "--fields", "1"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["survey"] == "glimpse" and summary["fields"] == 1 and summary["files"] == 2
    assert summary["tiles"] == 129 and summary["truth_objects"] == 5


def test_sky_coverage_known_answers() -> None:
    lon, lat, radius = np.array([30.0]), np.array([0.1]), np.array([40.0])
    assert sky_coverage(lon, lat, radius, lon, lat, radius)[0, 0] == pytest.approx(1.0)
    # shifted by 1.3 radii along b: half of the truth box is covered
    shifted = lat + 1.3 * 40.0 / 3600.0
    assert sky_coverage(lon, shifted, radius, lon, lat, radius)[0, 0] == pytest.approx(0.5, abs=1e-3)
    assert sky_coverage(lon + 0.1, lat, radius, lon, lat, radius)[0, 0] == 0.0
    assert sky_coverage(lon[:0], lat[:0], radius[:0], lon, lat, radius).shape == (0, 1)


def _catalogue(path, truth, *, lat_shift_radii: float = 0.0, scores=None, fields=None):
    """A night catalogue in the orchestration's detection columns, one row per truth bubble."""
    n = len(truth)
    glat = np.asarray(truth["glat"], float) + lat_shift_radii * np.asarray(truth["radius_arcsec"], float) / 3600.0
    Table({
        "name": [f"bubbles-{i + 1:05d}" for i in range(n)], "glon": np.asarray(truth["glon"], float), "glat": glat,
        "ra": np.zeros(n), "dec": np.zeros(n), "radius_arcsec": np.asarray(truth["radius_arcsec"], float),
        "score": np.full(n, 0.9) if scores is None else np.asarray(scores, float), "label": ["bubble"] * n,
        "n_tiles": np.ones(n, int), "tile_id": ["t"] * n, "survey": ["glimpse"] * n,
        "field": list(truth["field"]) if fields is None else fields,
    }).write(path, format="fits", overwrite=True)
    return path


def test_score_night_perfect_and_worse(kit, tmp_path, capsys) -> None:
    truth = Table.read(kit / TRUTH_STEM.with_suffix(".fits"))
    assert main(["score-night", "--kit", str(kit), "--catalogue", str(_catalogue(tmp_path / "same.fits", truth))]) == 0
    perfect = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert perfect["truth"] == 5 and perfect["detections"] == 5 and perfect["matched"] == 5
    assert perfect["completeness"] == perfect["purity"] == perfect["completeness_clear"] == perfect["completeness_not_clear"] == 1.0
    assert perfect["at_threshold"]["completeness"] == 1.0 and perfect["score_threshold"] > 0

    shifted = score_night(kit, _catalogue(tmp_path / "shifted.fits", truth, lat_shift_radii=3.0))
    assert shifted["completeness"] == 0.0 and shifted["purity"] == 0.0 and shifted["detections"] == 5

    missing = score_night(kit, _catalogue(tmp_path / "missing.fits", truth[:2]))
    assert missing["completeness"] == pytest.approx(2 / 5) and missing["purity"] == 1.0 and missing["truth"] == 5

    # rows below the model's operating threshold count in the all-rows figures only
    low = score_night(kit, _catalogue(tmp_path / "low.fits", truth, scores=[0.9, 0.9, 0.1, 0.1, 0.1]))
    assert low["completeness"] == 1.0 and low["at_threshold"]["completeness"] == pytest.approx(2 / 5)

    # rows of fields that are not the kit's are not scored against its truth
    other = score_night(kit, _catalogue(tmp_path / "other.fits", truth, fields=["l030"] * 5))
    assert other["rows_ignored"] == 5 and other["detections"] == 0 and other["completeness"] == 0.0


def test_score_night_empty_catalogue(kit, tmp_path) -> None:
    from nightshift.core.catalog import Column, write_catalog

    names = ("name", "glon", "glat", "ra", "dec", "radius_arcsec", "score", "label", "n_tiles", "tile_id", "survey", "field")
    write_catalog([], [Column(n) for n in names], tmp_path / "empty", meta={}, radius_arcsec="radius_arcsec", label="name")
    figures = score_night(kit, tmp_path / "empty.fits")
    assert figures["detections"] == 0 and figures["matched"] == 0 and figures["completeness"] == 0.0 and figures["truth"] == 5
