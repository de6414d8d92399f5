"""The night kit: simulate-night writes a night the ingest tiles into accepted tiles; score-night scores honestly."""

import json
from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from nightshift.core.tiles import decode_tile, make_tile, window_origins
from nightshift.ghosts.artefacts import decode_rle
from nightshift.ghosts.cli import main
from nightshift.ghosts.config import BANDS, TILE_SIZE
from nightshift.ghosts.night import PIXEL_SCALE_ARCSEC, score_night, simulate_night
from nightshift.ghosts.preprocess import display_pixels, image_to_pixels, pixels_to_tensor
from nightshift.ghosts.servicer import GhostsModel
from nightshift.ghosts.simulate import nominal_pedestal, simulate_exposure, stretch
from nightshift.v1 import results_pb2, tile_pb2

SEED = 7
EXPOSURES = 4


@pytest.fixture(scope="module")
def kit(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("kit")
    summary = simulate_night(directory, SEED, exposures=EXPOSURES)
    assert summary["fields"] == EXPOSURES and summary["files"] == 3 * EXPOSURES and summary["tiles"] == EXPOSURES
    assert summary["truth_objects"] >= 5
    return directory


def ingest_tiles(kit: Path) -> list[tuple[tile_pb2.ImageTile, str]]:
    """What the ingest cuts from the kit's raw files (its read/window arithmetic), as tiles, with each field's name."""
    night = json.loads((kit / "night.json").read_text())
    survey = night["survey"]
    tiling = survey["tiling"]
    bands = [tile_pb2.Band(name=b["name"], wavelength_um=b["wavelength_um"], unit=b["unit"]) for b in survey["bands"]]
    tiles = []
    for field in sorted(p for p in (kit / "raw").iterdir()):
        planes, wcs_cards = [], []
        for band in survey["bands"]:
            with fits.open(field / f"{band['name']}.fits") as hdus:
                assert WCS(hdus[0].header).has_celestial and hdus[0].header["BUNIT"] == band["unit"]
                planes.append(np.asarray(hdus[0].data, dtype=np.float32))
                wcs_cards = [str(c).ljust(80) for c in WCS(hdus[0].header).to_header().cards]
        cube = np.stack(planes)
        for size in tiling["window_px"]:
            rows = window_origins(cube.shape[1], size, tiling["overlap_fraction"])
            cols = window_origins(cube.shape[2], size, tiling["overlap_fraction"])
            assert (rows, cols, tiling["output_px"]) == ([0], [0], 0), "one 400x400 tile per exposure, not resampled"
            pixels = cube[:, :size, :size]
            assert np.isfinite(pixels).all(axis=0).any()  # the ingest keeps it
            tiles.append((make_tile(pixels, bands=bands, survey=survey["name"], field=field.name, wcs_cards=wcs_cards),
                          field.name))
    return tiles


def test_night_json_has_the_shape_the_orchestration_reads(kit: Path) -> None:
    night = json.loads((kit / "night.json").read_text())
    assert set(night) == {"survey", "service"}
    survey = night["survey"]
    assert survey["name"] == "des" and [b["name"] for b in survey["bands"]] == list(BANDS)
    assert all(set(b) == {"name", "wavelength_um", "unit"} for b in survey["bands"])
    assert survey["tiling"] == {"kind": "fits", "window_px": [TILE_SIZE], "overlap_fraction": 0.0, "output_px": 0}
    assert night["service"] == {"duplicate_radius_arcsec": 20.0, "crossmatch_radius_arcsec": 0.0}
    assert sorted(p.name for p in (kit / "raw").iterdir()) == [f"D{500_000 + i:08d}" for i in range(EXPOSURES)]
    assert not (kit / "reference").exists()


def test_ingest_tiles_are_what_the_service_accepts(kit: Path) -> None:
    spec = GhostsModel().spec
    tiles = ingest_tiles(kit)
    assert len(tiles) == EXPOSURES
    for message, _ in tiles:
        spec.check(message)  # bands in order, 400 x 400, float32
        tile = decode_tile(message, spec=spec)
        wcs = WCS(fits.Header.fromstring(tile.wcs_header))
        assert wcs.proj_plane_pixel_scales()[0].to_value(u.arcsec) == pytest.approx(PIXEL_SCALE_ARCSEC)
        centre = wcs.pixel_to_world(199.5, 199.5)
        assert -60.5 < centre.dec.deg < -39.5  # the DES footprint


def test_raw_files_and_truth_are_the_simulators_exposures(kit: Path) -> None:
    truth = json.loads((kit / "truth" / "truth.json").read_text())
    for field in truth["fields"]:
        exposure = simulate_exposure(np.random.default_rng([SEED, field["index"]]), keep_linear=True)
        data = fits.getdata(kit / "raw" / field["field"] / "R.fits")
        assert np.array_equal(np.isnan(data), np.isnan(exposure.linear))
        sky = fits.getheader(kit / "raw" / field["field"] / "R.fits")["SKYLEVEL"]
        assert np.nanmedian(data) > sky  # flux in electrons, the sky included
        assert [a["label"] for a in field["artefacts"]] == [a.label for a in exposure.artefacts]
        wcs = WCS(fits.Header.fromstring(field["wcs"]))
        for recorded, artefact in zip(field["artefacts"], exposure.artefacts):
            assert np.array_equal(decode_rle(recorded["rle"]["counts"], *recorded["rle"]["size"]), artefact.mask)
            x, y = wcs.world_to_pixel(SkyCoord(recorded["ra"] * u.deg, recorded["dec"] * u.deg))
            assert artefact.mask[int(round(float(y))), int(round(float(x)))]  # the sky position is on the artefact


def test_fits_tiles_give_the_model_the_synth_paths_input(kit: Path) -> None:
    """Tiles cut from the FITS (electrons) reach the network on the display scale of the simulator's images.

    The service stretches them with its own sky and noise estimates and the nominal pedestal, so they
    match the simulator's display before its random pedestal offsets and JPEG compression to a few
    8-bit levels, and the shipped model finds as many true artefacts in them as in the simulator's JPEGs.
    """
    truth = json.loads((kit / "truth" / "truth.json").read_text())
    model = GhostsModel()
    model.load()
    spec = model.spec
    tiles = [decode_tile(message, spec=spec) for message, _ in ingest_tiles(kit)]
    exposures = [simulate_exposure(np.random.default_rng([SEED, f["index"]]), keep_linear=True) for f in truth["fields"]]
    for tile, exposure in zip(tiles, exposures):
        network_input = pixels_to_tensor(display_pixels(tile.pixels, [b.unit for b in tile.message.bands])).numpy()
        live = np.isfinite(exposure.linear)
        ideal = np.clip(nominal_pedestal() + stretch(exposure.linear), 0, 255) / 255
        jpeg = pixels_to_tensor(image_to_pixels(exposure.image)).numpy()
        assert np.median(np.abs(network_input[0] - ideal)[live]) < 8 / 255
        assert np.median(np.abs(network_input[0] - jpeg[0])[live]) < 15 / 255
        assert np.allclose(network_input[:, ~live], 23 / 255)  # off the CCDs, as the JPEG gaps
    jpeg_tiles = [decode_tile(make_tile(image_to_pixels(e.image), bands=[tile_pb2.Band(name=b, unit="8-bit") for b in BANDS],
                                        survey="des", field="jpeg"), spec=spec) for e in exposures]
    linear_as_display = [decode_tile(make_tile(t.pixels, bands=list(BANDS), survey="des", field="raw"), spec=spec) for t in tiles]

    def recovered(batch) -> int:
        results = model.infer(batch, results_pb2.ModelRef())
        hits = 0
        for result, exposure in zip(results, exposures):
            masks = [(i.label, decode_rle(i.rle.counts, i.rle.height, i.rle.width)) for i in result.instances]
            for artefact in exposure.artefacts:
                hits += any(label == artefact.label and (m & artefact.mask).sum() >= 0.5 * (m | artefact.mask).sum()
                            for label, m in masks)
        return hits

    from_fits, from_jpeg = recovered(tiles), recovered(jpeg_tiles)
    assert from_jpeg >= 3 and from_fits >= 0.75 * from_jpeg
    wrong = recovered(linear_as_display)
    print(f"recovered: {from_fits} from FITS, {from_jpeg} from JPEG, {wrong} from electrons taken as display levels")
    assert wrong <= from_fits / 3  # electrons taken for display levels saturate: the stretch is needed


def catalogue(path: Path, rows: list[dict]) -> Path:
    """A night catalogue in the orchestration's detection column layout."""
    coords = SkyCoord([r["ra"] for r in rows] * u.deg, [r["dec"] for r in rows] * u.deg) if rows else None
    Table({
        "name": [f"ghosts-{i + 1:05d}" for i in range(len(rows))],
        "glon": coords.galactic.l.deg if rows else np.zeros(0), "glat": coords.galactic.b.deg if rows else np.zeros(0),
        "ra": np.array([r["ra"] for r in rows], float), "dec": np.array([r["dec"] for r in rows], float),
        "radius_arcsec": np.array([r.get("radius_arcsec", 100.0) for r in rows], float),
        "score": np.array([r.get("score", 0.9) for r in rows], float),
        "label": np.array([r["label"] for r in rows], dtype="U8"), "n_tiles": np.ones(len(rows), int),
        "tile_id": np.array(["t"] * len(rows), dtype="U8"), "survey": np.array(["des"] * len(rows), dtype="U8"),
        "field": np.array(["f"] * len(rows), dtype="U16"),
    }).write(path, format="fits", overwrite=True)
    return path


def truth_rows(kit: Path) -> list[dict]:
    truth = json.loads((kit / "truth" / "truth.json").read_text())
    return [{"ra": a["ra"], "dec": a["dec"], "label": a["label"]} for f in truth["fields"] for a in f["artefacts"]]


def test_the_truth_itself_scores_perfect(kit: Path, tmp_path: Path) -> None:
    rows = truth_rows(kit)
    score = score_night(kit, catalogue(tmp_path / "c.fits", rows))
    assert (score["truth"], score["detections"], score["matched"]) == (len(rows), len(rows), len(rows))
    assert score["completeness"] == 1.0 and score["purity"] == 1.0
    for label, figures in score["by_label"].items():
        if figures["truth"]:
            assert figures["completeness"] == 1.0 and figures["purity"] == 1.0, label


def test_shifted_missing_relabelled_and_repeated_rows_score_worse(kit: Path, tmp_path: Path) -> None:
    rows = truth_rows(kit)
    shifted = [{**r, "dec": r["dec"] + 0.5} for r in rows]  # 0.5 deg: about 100 pixels off
    score = score_night(kit, catalogue(tmp_path / "shifted.fits", shifted))
    assert score["completeness"] < 0.5 and score["purity"] < 0.5
    half = rows[: len(rows) // 2]
    score = score_night(kit, catalogue(tmp_path / "half.fits", half))
    assert score["completeness"] == pytest.approx(len(half) / len(rows), abs=1e-4) and score["purity"] == 1.0
    relabelled = [{**r, "label": {"bright": "faint", "faint": "rays", "rays": "bright"}[r["label"]]} for r in rows]
    assert score_night(kit, catalogue(tmp_path / "relabelled.fits", relabelled))["completeness"] < 0.5
    twice = rows + [{**r, "score": 0.5} for r in rows]
    score = score_night(kit, catalogue(tmp_path / "twice.fits", twice))
    assert score["completeness"] == 1.0 and score["purity"] == 0.5
    nearby = [{**r, "dec": r["dec"] + 30 / 3600} for r in rows]  # within the stated 40 arcsec of the masks
    assert score_night(kit, catalogue(tmp_path / "nearby.fits", nearby))["completeness"] == 1.0
    empty = score_night(kit, catalogue(tmp_path / "empty.fits", []))
    assert (empty["detections"], empty["completeness"], empty["purity"]) == (0, 0.0, None)


def test_command_line(tmp_path: Path, capsys) -> None:
    assert main(["simulate-night", "--output", str(tmp_path / "kit"), "--seed", "3", "--exposures", "1"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["survey"] == "des" and summary["fields"] == 1 and summary["files"] == 3
    assert {"truth_objects", "seconds"} <= set(summary)
    path = catalogue(tmp_path / "c.fits", truth_rows(tmp_path / "kit"))
    assert main(["score-night", "--kit", str(tmp_path / "kit"), "--catalogue", str(path)]) == 0
    score = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert score["truth"] == summary["truth_objects"] and score["completeness"] in (1.0, None)
