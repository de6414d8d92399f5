"""The command line: help, synth writes maps with their truth, infer writes maps and a catalogue, evaluate
ends with one JSON line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from regions import PolygonSkyRegion, Regions

from nightshift.filaments.cli import main
from nightshift.filaments.config import default_real_data_dir
from nightshift.filaments.realdata import real_data_available


def test_help_lists_every_command(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("synth", "train", "evaluate", "infer", "serve", "bench"):
        assert command in out


def test_synth_then_infer_with_a_wcs(tmp_path, capsys) -> None:
    assert main(["synth", "--output", str(tmp_path / "sky"), "--count", "1", "--size", "128", "--seed", "5"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["maps"] == 1 and 0 < summary["simulated"]["mask_fraction"] < 0.3
    image = fits.getdata(tmp_path / "sky" / "map_0000_nh2.fits")
    mask = fits.getdata(tmp_path / "sky" / "map_0000_mask.fits")
    assert image.shape == mask.shape == (128, 128) and set(np.unique(mask)) <= {0, 1}

    wcs = WCS(naxis=2)
    wcs.wcs.ctype, wcs.wcs.crval, wcs.wcs.crpix, wcs.wcs.cdelt = ["GLON-CAR", "GLAT-CAR"], [350.0, 0.5], [64.5, 64.5], [-0.0032, 0.0032]
    source = tmp_path / "field.fits"
    header = wcs.to_header()
    header["BUNIT"], header["OBJECT"] = "cm-2", "test field"
    fits.PrimaryHDU(image[:, :100], header=header).writeto(source)  # any size: not a multiple of the stride
    assert main(["infer", str(source), "--output", str(tmp_path / "out")]) == 0
    (result,) = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["filaments"] >= 1
    probability = fits.getdata(tmp_path / "out" / "field_probability.fits")
    assert probability.shape == (128, 100) and WCS(fits.getheader(tmp_path / "out" / "field_roi.fits")).has_celestial
    assert fits.getheader(tmp_path / "out" / "field_probability.fits")["OBJECT"] == "test field"
    catalogue = Table.read(tmp_path / "out" / "field_filaments.ecsv")
    assert len(catalogue) == result["filaments"] and str(catalogue["mean_nh2_per_cm2"].unit) == "1 / cm2"
    assert np.all(np.abs(catalogue["glat"] - 0.5) < 64 * 0.0032 + 1e-6)
    assert catalogue.meta["MODEL"] == "filaments-unet5" and catalogue.meta["INPUT"] == str(source)
    assert catalogue.meta["THRESH"] == 0.5 and catalogue.meta["FRAME"] == "galactic"
    regions = Regions.read(tmp_path / "out" / "field_filaments_icrs.reg", format="ds9")
    assert len(regions) == len(catalogue) and all(isinstance(r, PolygonSkyRegion) for r in regions)


def test_evaluate_prints_one_json_line_with_the_headline_figures(tmp_path, capsys) -> None:
    assert main(["evaluate", "--no-real", "--test-maps", "2", "--output", str(tmp_path)]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"dice", "iou", "ap"} <= set(figures) and {"dice", "iou", "ap"} <= set(figures["baseline"])
    assert {"dice", "iou", "ap", "parameters"} <= set(figures["filfinder"])
    assert json.loads((tmp_path / "evaluation.json").read_text())["dice"] == figures["dice"]
    assert figures["simulated"]["dice"] == figures["dice"] and "real" not in figures
    assert (tmp_path / "curves.png").stat().st_size > 1000


@pytest.mark.skipif(not real_data_available(default_real_data_dir()),
                    reason="the real Hi-GAL cut-out (../shared/data/filaments) is not on this machine")
def test_evaluate_names_the_real_and_simulated_figures_as_the_issue_does(tmp_path, capsys) -> None:
    assert main(["evaluate", "--test-maps", "2", "--output", str(tmp_path)]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("dice", "iou", "ap"):
        assert 0 < figures["real"][key] < 1 and 0 < figures["baseline"]["real"][key] < 1
        assert 0 < figures["filfinder"]["real"][key] < 1
    assert figures["simulated"]["dice"] == figures["dice"] and figures["real"]["columns"] == [200, 300]
    assert (tmp_path / "real_side_by_side.png").stat().st_size > 1000
