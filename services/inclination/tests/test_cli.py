"""The command line: help, synth -> infer on FITS files, and evaluate's one JSON line."""

from __future__ import annotations

import json

import pytest
from astropy.io import fits
from astropy.table import Table

from nightshift.inclination.cli import main


def test_help_lists_every_command(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("synth", "train", "evaluate", "infer", "serve", "bench"):
        assert command in out


def test_synth_then_infer_on_fits_cutouts_writes_a_catalogue(tmp_path, capsys) -> None:
    sims = tmp_path / "sims"
    assert main(["synth", "--galaxies", "5", "--seed", "2", "--fits", "--output", str(sims)]) == 0
    files = sorted(sims.glob("galaxy-*.fits"))
    assert len(files) == 5 and fits.getdata(files[0]).shape == (3, 64, 64)
    truth = Table.read(sims / "truth.ecsv")
    assert len(truth) == 5 and "inclination_deg" in truth.colnames
    capsys.readouterr()
    stem = tmp_path / "catalogue" / "inclination"
    assert main(["infer", *map(str, files), "--output", str(stem.parent)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["tiles"] == 5 and summary["galaxies"] == 5
    table = Table.read(stem.with_suffix(".ecsv"))
    assert list(table["name"]) == [f.stem for f in files]
    assert table.meta["MODEL"] and table.meta["INPUT"] == ",".join(map(str, files)) and table.meta["FRAME"] == "icrs"
    assert str(table["inclination"].unit) == "deg" and ((table["inclination"] >= 45) & (table["inclination"] <= 90)).all()
    header = fits.getheader(files[0])
    assert table["dec"][0] == pytest.approx(header["CRVAL2"], abs=1e-3)


def test_evaluate_prints_one_json_line_with_the_baseline(tmp_path, capsys) -> None:
    assert main(["evaluate", "--galaxies", "30", "--robustness", "--output", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    figures = json.loads(lines[-1])
    assert {"rms_deg", "mae_deg", "reject_auc", "coverage_1sigma", "coverage_2sigma", "members"} <= set(figures)
    assert {"rms_deg", "mae_deg", "reject_auc"} <= set(figures["baseline"])
    assert {"rms_deg_d25_40_60", "n_snr_40_80", "rms_deg_res_20_40"} <= set(figures) and figures["per_bin"]
    assert set(figures["robustness"]) == {"psf_1.5x", "sky_noise_1.5x"} and figures["robustness"]["psf_1.5x"]["baseline"]["rms_deg"] > 0
    from nightshift.inclination.servicer import BUNDLED_CARD

    assert figures["members"] == figures["ensemble_size"] == json.loads(BUNDLED_CARD.read_text())["config"]["ensemble_size"]
    assert json.loads((tmp_path / "evaluation.json").read_text())["galaxies"] == 30
    assert (tmp_path / "residuals.png").exists()


def test_infer_refuses_bad_cutouts_in_one_line_each_and_measures_the_rest(tmp_path, capsys) -> None:
    """A 2-D image, a non-square cube and a text file: one error line each, exit 2, the good cut-out measured;
    a cube without WCS or BUNIT is warned about."""
    import numpy as np

    rng = np.random.default_rng(0)
    good = tmp_path / "good.fits"
    fits.PrimaryHDU(rng.normal(1.0, 0.1, (3, 48, 48)).astype(np.float32)).writeto(good)
    fits.PrimaryHDU(np.ones((48, 48), np.float32)).writeto(tmp_path / "flat.fits")
    fits.PrimaryHDU(np.ones((3, 48, 40), np.float32)).writeto(tmp_path / "oblong.fits")
    (tmp_path / "notes.fits").write_text("SIMPLE? no")
    bad = [tmp_path / name for name in ("flat.fits", "oblong.fits", "notes.fits")]

    assert main(["infer", *map(str, [*bad, good]), "--output", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["done"] == 1 and summary["galaxies"] == 1 and set(summary["failed"]) == {str(p) for p in bad}
    errors = [line for line in captured.err.splitlines() if line.startswith("nightshift-inclination: error: ")]
    assert len(errors) == 3 and "expected a (3, H, W)" in errors[0] and "48x40 cut-out" in errors[1]
    assert "not a readable FITS image" in errors[2] and "Traceback" not in captured.err
    assert "good.fits: no celestial WCS" in captured.err and "good.fits: no BUNIT" in captured.err
    assert len(Table.read(tmp_path / "out" / "inclination.ecsv")) == 1


def test_bench_times_the_ensemble_against_its_first_member_alone() -> None:
    """The ensemble's members run in one batched pass; ``_member_cost`` times it against member 0 alone."""
    import numpy as np

    from nightshift.inclination.cli import _member_cost
    from nightshift.inclination.config import build_config
    from nightshift.inclination.infer import Predictor
    from nightshift.inclination.model import build_classifier, build_ensemble, build_regressor

    config = build_config(preset="tiny", ensemble_size=3, augmented_copies=2)
    ensemble = build_ensemble([build_regressor(config=config, member=k) for k in range(3)],
                              [build_classifier(config=config, member=k) for k in range(3)], image_size=config.image_size)
    images = np.random.default_rng(0).uniform(0, 1, (8, 3, config.image_size, config.image_size)).astype(np.float32)
    cost = _member_cost(Predictor(ensemble, config=config), images, batch_size=4, rounds=1)
    assert cost["members"] == 3
    assert cost["ensemble_ms_per_galaxy"] > 0 and cost["one_member_ms_per_galaxy"] > 0
    assert cost["member_cost_ratio"] == pytest.approx(cost["ensemble_ms_per_galaxy"] / cost["one_member_ms_per_galaxy"])
