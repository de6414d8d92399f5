"""The command line's outer layer: synth writes FITS + truth, infer reads them back, evaluate prints one JSON line."""

import json

from astropy.io import fits
from astropy.table import Table
from regions import Regions

from nightshift.bubbles.cli import build_parser, main


def test_help_lists_every_command(capsys) -> None:
    help_text = build_parser().parser.format_help()
    for command in ("synth", "train", "tune", "evaluate", "infer", "serve", "bench"):
        assert command in help_text


def test_synth_then_infer_on_the_written_fits(tmp_path, capsys) -> None:
    assert main(["synth", "--preset", "tiny", "--count", "1", "--seed", "5", "--output", str(tmp_path / "synth")]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["fields"] == 1 and summary["bubbles"] >= 1
    written = sorted(p.name for p in (tmp_path / "synth").iterdir())
    assert {"truth.fits", "truth.ecsv", "truth.csv", "truth_galactic.reg", "truth_icrs.reg"} <= set(written)
    planes = sorted(p for p in (tmp_path / "synth").glob("*.fits") if p.stem != "truth")
    assert [p.name.split("_")[-1] for p in planes] == ["irac4.fits", "mips24.fits"]
    assert fits.getheader(planes[0])["BUNIT"] == "MJy/sr"
    assert main(["infer", f"{planes[0]},{planes[1]}", "--output", str(tmp_path / "found")]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["fields"] == 1 and len(result["files"]) == 5
    found = Table.read(tmp_path / "found" / "bubbles.ecsv")
    assert found.meta["MODEL"] and found.meta["INPUT"] == f"{planes[0]},{planes[1]}" and found.meta["FRAME"] == "galactic"
    assert len(Regions.read(tmp_path / "found" / "bubbles_icrs.reg", format="ds9")) == len(found)


def test_infer_refuses_fields_it_cannot_search_in_one_line_each(tmp_path, capsys) -> None:
    """One plane instead of two, a pair without a WCS, a composite without a WCS in its name: exit 2, one line
    each, no traceback; the JPEG composite with a GLIMPSE name is searched."""
    import numpy as np
    from PIL import Image

    one = tmp_path / "one.fits"
    fits.PrimaryHDU(np.ones((128, 128), np.float32), header=fits.Header({"BUNIT": "MJy/sr"})).writeto(one)
    pair = [tmp_path / "a.fits", tmp_path / "b.fits"]
    for path in pair:
        fits.PrimaryHDU(np.ones((128, 128), np.float32)).writeto(path)
    rgb = np.random.default_rng(0).integers(0, 255, (200, 400, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "holiday.jpg")
    Image.fromarray(rgb).save(tmp_path / "GLM_04500+0000_mosaic_0.2x0.1_I24M1.jpg")
    inputs = [str(one), f"{pair[0]},{pair[1]}", str(tmp_path / "holiday.jpg"), str(tmp_path / "GLM_04500+0000_mosaic_0.2x0.1_I24M1.jpg")]

    assert main(["infer", *inputs, "--output", str(tmp_path / "found")]) == 2
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["done"] == 1 and summary["fields"] == 1 and set(summary["failed"]) == set(inputs[:3])
    errors = [line for line in captured.err.splitlines() if line.startswith("nightshift-bubbles: error: ")]
    assert len(errors) == 3 and "1 image planes, expected 2" in errors[0]
    assert "no celestial WCS" in errors[1] and "a composite without a WCS" in errors[2]
    assert "b.fits: no BUNIT" in captured.err and "4 inputs: 1 done, 3 failed" in captured.err and "Traceback" not in captured.err


def test_the_harder_sky_is_scored_with_intervals_and_bins() -> None:
    """evaluate's simulated block on two small fields of the harder sky: figures inside their intervals, bins that add up."""
    from nightshift.bubbles.baseline import RingTemplateDetector
    from nightshift.bubbles.scoring import CONTRAST_BINS, recall_bins, simulated_rows
    from nightshift.bubbles.workflows import _simulated_figures, load_model

    model, config, _ = load_model(None)
    config = config.with_overrides({"field_px": "384", "window_px": "[150, 300]"})
    baseline = RingTemplateDetector(fill_weight=0.5, score_threshold=0.55)
    fields, model_rows, baseline_rows = simulated_rows(model, config, seed=7, count=2, baseline=baseline, hard=True)
    assert min(b.contrast for f in fields for b in f.bubbles) >= 0.15
    figures = _simulated_figures(config, baseline, model_rows, baseline_rows)
    assert figures["fields"] == 2 and figures["bubbles_all"] == sum(len(f.bubbles) for f in fields)
    for detector in (figures, figures["baseline"]):
        for name in ("detection_rate", "precision", "f2"):
            assert detector[f"{name}_ci95_low"] <= detector[name] <= detector[f"{name}_ci95_high"]
    assert set(figures["sweep"]) == {f"{t:.2f}" for t in (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)}
    bins = recall_bins(fields, model_rows, config.score_threshold, "contrast", CONTRAST_BINS)
    assert sum(b["bubbles"] for b in bins) == figures["bubbles_all"]
    assert sum(b["clear_hit"] for b in bins) == round(figures["detection_rate"] * figures["bubbles_clear"])
