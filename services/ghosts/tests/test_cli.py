"""The command line: help, synth, infer (JPEG and FITS), evaluate."""

import json
from pathlib import Path

import numpy as np
import pytest

from nightshift.ghosts.cli import build_parser, main


def test_help_lists_every_command(capsys) -> None:
    with pytest.raises(SystemExit):
        build_parser().parser.parse_args(["--help"])
    text = capsys.readouterr().out
    assert all(command in text for command in ("synth", "train", "crossval-real", "evaluate", "infer", "serve", "bench"))


def test_synth_then_infer(tmp_path: Path, capsys) -> None:
    assert main(["synth", "--output", str(tmp_path / "sim"), "--count", "2", "--seed", "3"]) == 0
    truth = json.loads((tmp_path / "sim" / "truth.json").read_text())
    assert len(truth["images"]) == 2
    images = sorted((tmp_path / "sim").glob("*.jpg"))
    assert main(["infer", *map(str, images), "--output", str(tmp_path / "out"), "--threshold", "0.5"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["images"] == 2
    assert {p.name for p in (tmp_path / "out").iterdir()} >= {"ghosts.fits", "ghosts.ecsv", "ghosts.csv", "ghosts_galactic.reg", "ghosts_icrs.reg",
                                                                 "instances.json", "overlays.png"}


def test_infer_on_a_fits_file_gives_sky_positions(tmp_path: Path, capsys) -> None:
    from astropy.io import fits
    from astropy.wcs import WCS

    from nightshift.ghosts.simulate import SkyModel, simulate_exposure

    exposure = simulate_exposure(np.random.default_rng([3, 0]), SkyModel(clean_fraction=0.0, bright_ghosts=(2, 3)))
    wcs = WCS(naxis=2)
    wcs.wcs.ctype, wcs.wcs.crval, wcs.wcs.crpix, wcs.wcs.cdelt = ["RA---TAN", "DEC--TAN"], [30.0, -20.0], [200.5, 200.5], [-0.0056, 0.0056]
    path = tmp_path / "exposure.fits"
    fits.PrimaryHDU(exposure.image[..., 0].astype(np.float32), header=wcs.to_header()).writeto(path)
    assert main(["infer", str(path), "--output", str(tmp_path / "out"), "--threshold", "0.3"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["instances"] >= 1
    from astropy.table import Table

    table = Table.read(tmp_path / "out" / "ghosts.fits")
    assert np.all(np.abs(table["dec"] + 20) < 1.5) and str(table["ra"].unit) == "deg"


def test_evaluate_prints_one_json_line(tmp_path: Path, capsys) -> None:
    assert main(["evaluate", "--count", "3", "--no-real", "--output", str(tmp_path)]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"ap50", "baseline"} <= set(figures) and "ap50" in figures["baseline"]
    assert (tmp_path / "evaluation.json").exists() and (tmp_path / "pr_curves.png").exists()


def test_infer_reports_unusable_images_in_one_line_each_and_searches_the_rest(tmp_path: Path, capsys) -> None:
    """A missing file, a text file named .jpg, a 20x20 picture and a 5-plane cube: exit 2, one line each, no
    traceback; the good picture is searched and its lack of a WCS is warned about."""
    from astropy.io import fits
    from PIL import Image

    assert main(["synth", "--output", str(tmp_path / "sim"), "--count", "1", "--seed", "3"]) == 0
    (good,) = sorted((tmp_path / "sim").glob("*.jpg"))
    (tmp_path / "notes.jpg").write_text("not a picture")
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "tiny.png")
    fits.PrimaryHDU(np.ones((5, 64, 64), np.float32)).writeto(tmp_path / "cube.fits")
    bad = [tmp_path / "missing.jpg", tmp_path / "notes.jpg", tmp_path / "tiny.png", tmp_path / "cube.fits"]
    capsys.readouterr()

    assert main(["infer", *map(str, [*bad, good]), "--output", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["images"] == summary["done"] == 1 and set(summary["failed"]) == {str(p) for p in bad}
    errors = [line for line in captured.err.splitlines() if line.startswith("nightshift-ghosts: error: ")]
    assert len(errors) == 4 and "No such file" in errors[0] and "not a readable picture" in errors[1]
    assert "smaller than the 64 x 64" in errors[2] and "expected one plane or 3" in errors[3]
    assert f"{good}: a picture has no WCS" in captured.err and "Traceback" not in captured.err
