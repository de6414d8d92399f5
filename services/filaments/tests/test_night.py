"""The night kit: simulate-night writes a night the ingest tiles into tiles the service accepts, with its
truth; score-night scores a catalogue made from the truth as perfect and a shifted or partial one as worse."""

from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales

from nightshift.core.tiles import window_origins
from nightshift.filaments.cli import main
from nightshift.filaments.config import BAND, UNIT
from nightshift.filaments.night import MIN_LENGTH_PX, SURVEY, spine_length_px
from nightshift.filaments.servicer import FilamentsModel

_SIZE_PX = 384  # 2 x 2 overlapping windows of 256 px at overlap 0.5


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    directory = tmp_path_factory.mktemp("kit")
    assert main(["simulate-night", "--output", str(directory), "--seed", "4", "--fields", "1", "--size", str(_SIZE_PX)]) == 0
    return directory


def _catalogue(path, glon, glat):
    """A night catalogue in the orchestration's detection layout."""
    count = len(glon)
    Table({"name": [f"filaments-{i:05d}" for i in range(count)], "glon": np.asarray(glon, float), "glat": np.asarray(glat, float),
           "ra": np.zeros(count), "dec": np.zeros(count), "radius_arcsec": np.zeros(count), "score": np.full(count, 0.8),
           "label": ["filament"] * count, "n_tiles": np.ones(count, int), "tile_id": ["t"] * count,
           "survey": [SURVEY] * count, "field": ["l351"] * count}).write(path, overwrite=True)
    return path


def test_help_lists_the_night_commands(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "simulate-night" in out and "score-night" in out


def test_night_json_has_the_survey_shape_and_the_service_radii(kit) -> None:
    night = json.loads((kit / "night.json").read_text())
    assert set(night) == {"survey", "service"}
    survey = night["survey"]
    assert survey["name"] == SURVEY and set(survey) == {"name", "bands", "tiling"}
    assert survey["bands"] == [{"name": BAND, "wavelength_um": 0.0, "unit": UNIT}]
    tiling = survey["tiling"]
    assert set(tiling) == {"kind", "window_px", "overlap_fraction", "output_px"} and tiling["kind"] == "fits"
    assert 0 <= tiling["overlap_fraction"] < 1 and tiling["output_px"] == 0
    service = night["service"]
    assert service["crossmatch_radius_arcsec"] == 0.0
    truth = json.loads((kit / "truth" / "truth.json").read_text())
    assert 0 < service["duplicate_radius_arcsec"] < truth["hit_radius_arcsec"]


def test_the_ingest_cuts_tiles_the_service_accepts(kit) -> None:
    spec = FilamentsModel().spec
    tiling = json.loads((kit / "night.json").read_text())["survey"]["tiling"]
    (band,) = [b["name"] for b in json.loads((kit / "night.json").read_text())["survey"]["bands"]]
    assert (band,) == spec.bands
    raws = sorted((kit / "raw").glob("*/*.fits"))
    assert [p.name for p in raws] == [f"{BAND}.fits"]
    with fits.open(raws[0]) as hdus:
        image, header = hdus[0].data, hdus[0].header
    assert image.dtype == np.dtype(">f4") and header["BUNIT"] == UNIT
    wcs = WCS(header)
    assert wcs.has_celestial and list(wcs.wcs.ctype) == ["GLON-CAR", "GLAT-CAR"]
    assert np.allclose(proj_plane_pixel_scales(wcs) * 3600, 11.5)
    height, width = image.shape
    sizes = []
    for size in tiling["window_px"]:
        rows, cols = window_origins(height, size, tiling["overlap_fraction"]), window_origins(width, size, tiling["overlap_fraction"])
        assert rows[-1] + size == height and cols[-1] + size == width  # every pixel is covered
        for y0 in rows:
            for x0 in cols:
                window = image[y0 : y0 + size, x0 : x0 + size]
                output = tiling["output_px"] or size
                sizes.append((output, output))
                assert np.isfinite(window).any()  # the ingest keeps it
    assert len(sizes) == 4 and set(sizes) == {(spec.height, spec.width)}


def test_truth_mask_and_spines_lie_on_the_field(kit) -> None:
    image_header = fits.getheader(kit / "raw" / "l351" / f"{BAND}.fits")
    with fits.open(kit / "truth" / "l351_mask.fits") as hdus:
        mask, usable = hdus[0].data.astype(bool), hdus["USABLE"].data.astype(bool)
        assert WCS(hdus[0].header).wcs.compare(WCS(image_header).wcs)
    image = fits.getdata(kit / "raw" / "l351" / f"{BAND}.fits")
    np.testing.assert_array_equal(usable, np.isfinite(image))
    spines = Table.read(kit / "truth" / "spines.ecsv", format="ascii.ecsv")
    filaments = Table.read(kit / "truth" / "filaments.ecsv", format="ascii.ecsv")
    assert len(filaments) >= 10 and set(spines["filament"]) == set(filaments["filament"])
    rows, cols = np.rint(spines["y_px"]).astype(int), np.rint(spines["x_px"]).astype(int)
    assert mask[np.clip(rows, 0, _SIZE_PX - 1), np.clip(cols, 0, _SIZE_PX - 1)].mean() > 0.95
    x, y = WCS(image_header).world_to_pixel_values(spines["glon"], spines["glat"])
    np.testing.assert_allclose(x, spines["x_px"], atol=1e-6)
    np.testing.assert_allclose(y, spines["y_px"], atol=1e-6)
    assert np.all(filaments["counted"] == (filaments["visible_length_px"] >= MIN_LENGTH_PX))


def test_spine_length_counts_only_steps_over_pixels_with_data() -> None:
    spine = np.array([[0.0, 0.0], [0.0, 3.0], [4.0, 3.0]])
    assert spine_length_px(spine) == pytest.approx(7.0)
    usable = np.ones((5, 5), bool)
    usable[4, 3] = False
    assert spine_length_px(spine, usable) == pytest.approx(3.0)


def test_a_catalogue_of_the_truth_scores_perfect(kit, tmp_path, capsys) -> None:
    filaments = Table.read(kit / "truth" / "filaments.ecsv", format="ascii.ecsv")
    counted = filaments[filaments["counted"]]
    path = _catalogue(tmp_path / "truth.fits", counted["glon"], counted["glat"])
    assert main(["score-night", "--kit", str(kit), "--catalogue", str(path)]) == 0
    score = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert score["truth"] == len(counted) == score["matched"] == score["detections"] == score["hits"]
    assert score["completeness"] == 1.0 and score["purity"] == 1.0


def test_shifted_missing_or_spurious_rows_score_worse(kit, tmp_path, capsys) -> None:
    from nightshift.filaments.night import score_night

    filaments = Table.read(kit / "truth" / "filaments.ecsv", format="ascii.ecsv")
    counted = filaments[filaments["counted"]]
    glon, glat = np.asarray(counted["glon"]), np.asarray(counted["glat"])
    off_field = score_night(kit, _catalogue(tmp_path / "off.fits", glon, glat + 1.5))
    assert off_field["completeness"] == 0.0 and off_field["purity"] == 0.0 and off_field["detections"] == len(counted)
    shifted = score_night(kit, _catalogue(tmp_path / "shifted.fits", glon + 5 / 60, glat + 5 / 60))
    assert shifted["completeness"] < 1.0 and shifted["purity"] < 1.0
    half = len(counted) // 2
    partial = score_night(kit, _catalogue(tmp_path / "partial.fits", glon[:half], glat[:half]))
    assert partial["purity"] == 1.0 and partial["matched"] >= half and partial["completeness"] < 1.0
    spurious = score_night(kit, _catalogue(tmp_path / "spurious.fits", np.r_[glon, glon], np.r_[glat, glat + 1.5]))
    assert spurious["completeness"] == 1.0 and spurious["purity"] == pytest.approx(0.5)
    empty = score_night(kit, _catalogue(tmp_path / "empty.fits", [], []))
    assert empty["detections"] == 0 and empty["completeness"] == 0.0 and empty["purity"] is None
