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
    for command in ("synth", "train", "evaluate", "select-inference", "select-training", "infer", "serve", "bench"):
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
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["inputs"] == summary["done"] == 1 and summary["failed"] == {}
    (result,) = summary["maps"]
    assert result["filaments"] >= 1
    probability = fits.getdata(tmp_path / "out" / "field_probability.fits")
    assert probability.shape == (128, 100) and WCS(fits.getheader(tmp_path / "out" / "field_roi.fits")).has_celestial
    assert fits.getheader(tmp_path / "out" / "field_probability.fits")["OBJECT"] == "test field"
    catalogue = Table.read(tmp_path / "out" / "field_filaments.ecsv")
    assert len(catalogue) == result["filaments"] and str(catalogue["mean_nh2_per_cm2"].unit) == "1 / cm2"
    assert np.all(np.abs(catalogue["glat"] - 0.5) < 64 * 0.0032 + 1e-6)
    assert catalogue.meta["MODEL"] == "filaments-unet5" and catalogue.meta["INPUT"] == str(source)
    shipped = json.loads(_shipped_card().read_text())["config"]
    assert catalogue.meta["THRESH"] == shipped["threshold"] and catalogue.meta["FRAME"] == "galactic"
    assert catalogue.meta["TTAVIEWS"] == shipped["test_time_views"]
    regions = Regions.read(tmp_path / "out" / "field_filaments_icrs.reg", format="ds9")
    assert len(regions) == len(catalogue) and all(isinstance(r, PolygonSkyRegion) for r in regions)


def _shipped_card():
    from nightshift.filaments.model import bundled_weights

    return bundled_weights().with_suffix(".json")


def test_infer_takes_the_number_of_test_time_views(tmp_path, capsys) -> None:
    image = np.random.default_rng(2).lognormal(np.log(1e22), 0.4, (64, 64)).astype(np.float32)
    source = tmp_path / "small.fits"
    fits.PrimaryHDU(image, header=fits.Header({"BUNIT": "cm-2"})).writeto(source)
    maps = {}
    for views in ("1", "4"):
        assert main(["infer", str(source), "--output", str(tmp_path / views), "--test-time-views", views]) == 0
        capsys.readouterr()
        maps[views] = fits.getdata(tmp_path / views / "small_probability.fits")
        assert Table.read(tmp_path / views / "small_filaments.ecsv").meta["TTAVIEWS"] == int(views)
    assert np.abs(maps["4"] - maps["1"]).max() > 1e-3
    with pytest.raises(SystemExit):
        main(["infer", str(source), "--output", str(tmp_path / "3"), "--test-time-views", "3"])


def test_select_inference_writes_dice_by_views_and_threshold(tmp_path, capsys) -> None:
    assert main(["select-inference", "--no-real", "--maps", "1", "--output", str(tmp_path)]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert sorted(figures["simulated_selection"], key=int) == ["1", "2", "4", "8"] and "real_training_columns" not in figures
    assert figures["best"]["test_time_views"] in (1, 2, 4, 8) and 0.3 <= figures["best"]["threshold"] <= 0.7
    assert json.loads((tmp_path / "inference_selection.json").read_text())["best"] == figures["best"]
    assert figures["chosen"]["test_time_views"] <= figures["best"]["test_time_views"]


def test_evaluate_prints_one_json_line_with_the_headline_figures(tmp_path, capsys) -> None:
    assert main(["evaluate", "--no-real", "--test-maps", "2", "--output", str(tmp_path)]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"dice", "iou", "ap"} <= set(figures) and {"dice", "iou", "ap"} <= set(figures["baseline"])
    assert {"dice", "iou", "ap", "parameters"} <= set(figures["filfinder"])
    assert json.loads((tmp_path / "evaluation.json").read_text())["dice"] == figures["dice"]
    assert figures["simulated"]["dice"] == figures["dice"] and "real" not in figures
    assert figures["test_time_views"] == json.loads(_shipped_card().read_text())["config"]["test_time_views"]
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


def test_infer_reports_bad_maps_in_one_line_each_and_goes_on(tmp_path, capsys) -> None:
    """A missing file, a JPEG, a 20x20 map and an all-NaN map: one line each, exit 2, the good map still done;
    int16 pixels, an unexpected BUNIT and no WCS are warned about."""
    good = tmp_path / "good.fits"
    header = fits.Header({"BUNIT": "MJy/sr"})
    fits.PrimaryHDU(np.full((96, 96), 300, np.int16), header=header).writeto(good)
    (tmp_path / "picture.fits").write_bytes(b"\xff\xd8\xff\xe0 a JPEG, not FITS")
    fits.PrimaryHDU(np.ones((20, 20), np.float32)).writeto(tmp_path / "small.fits")
    fits.PrimaryHDU(np.full((96, 96), np.nan, np.float32)).writeto(tmp_path / "empty.fits")
    inputs = [tmp_path / name for name in ("missing.fits", "picture.fits", "small.fits", "empty.fits", "good.fits")]

    assert main(["infer", *map(str, inputs), "--output", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["done"] == 1 and summary["maps"][0]["input"] == str(good)
    assert set(summary["failed"]) == {str(p) for p in inputs[:4]}
    errors = [line for line in captured.err.splitlines() if ": error: " in line]
    assert len(errors) == 4 and all(line.startswith("nightshift-filaments: error: ") for line in errors)
    assert "No such file" in errors[0] and "not a readable FITS image" in errors[1]
    assert "smaller than the 64 x 64" in errors[2] and "no finite pixel" in errors[3]
    warnings = [line for line in captured.err.splitlines() if ": warning: " in line]
    assert any("integer pixels (>i2" in line or "integer pixels (int16" in line for line in warnings)
    assert any("BUNIT 'MJy/sr'" in line for line in warnings) and any("no celestial WCS" in line for line in warnings)
    assert "5 inputs: 1 done, 4 failed" in captured.err and "Traceback" not in captured.err
    assert (tmp_path / "out" / "good_filaments.fits").is_file()


def test_an_unwritable_output_is_one_line_and_exit_2(tmp_path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    fits.PrimaryHDU(np.ones((64, 64), np.float32), header=fits.Header({"BUNIT": "cm-2"})).writeto(tmp_path / "map.fits")
    assert main(["infer", str(tmp_path / "map.fits"), "--output", str(blocker / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") <= 3 and "nightshift-filaments: error: " in err and "Traceback" not in err


def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.startswith("nightshift-filaments ")


@pytest.mark.skipif(not real_data_available(default_real_data_dir()), reason="the real Hi-GAL cut-out is not present")
def test_train_without_evaluation_then_select_training_on_the_held_out_block(tmp_path, capsys) -> None:
    run = tmp_path / "run"
    assert main(["train", "--preset", "tiny", "--set", "epochs=1", "--set", "real_train_columns=[0,160]", "--no-evaluate",
                 "--output", str(run)]) == 0
    card = json.loads((run / "filaments-tiny.json").read_text())
    assert not {"dice", "real_dice"} & set(card["metrics"])  # nothing scored: no test figure to look at
    capsys.readouterr()
    weights = str(run / "filaments-tiny.safetensors")
    assert main(["select-training", "--run", "tiny", weights, "--run", "tiny", weights, "--maps", "1",
                 "--output", str(tmp_path)]) == 0
    figures = json.loads((tmp_path / "training_selection.json").read_text())
    assert figures["holdout_columns"] == [160, 200] and figures["best"] == "tiny"
    assert len(figures["variants"]["tiny"]["runs"]) == 2 and 0 <= figures["variants"]["tiny"]["mean_dice"] <= 1
