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
    assert main(["synth", "--galaxies", "5", "--seed", "2", "--fits", "--out", str(sims)]) == 0
    files = sorted(sims.glob("galaxy-*.fits"))
    assert len(files) == 5 and fits.getdata(files[0]).shape == (3, 64, 64)
    truth = Table.read(sims / "truth.ecsv")
    assert len(truth) == 5 and "inclination_deg" in truth.colnames
    capsys.readouterr()
    stem = tmp_path / "catalogue"
    assert main(["infer", *map(str, files), "--out", str(stem)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["tiles"] == 5 and summary["galaxies"] == 5
    table = Table.read(stem.with_suffix(".ecsv"))
    assert list(table["name"]) == [f.stem for f in files]
    assert table.meta["MODEL"] and table.meta["INPUT"] == ",".join(map(str, files)) and table.meta["FRAME"] == "icrs"
    assert str(table["inclination"].unit) == "deg" and ((table["inclination"] >= 45) & (table["inclination"] <= 90)).all()
    header = fits.getheader(files[0])
    assert table["dec"][0] == pytest.approx(header["CRVAL2"], abs=1e-3)


def test_evaluate_prints_one_json_line_with_the_baseline(tmp_path, capsys) -> None:
    assert main(["evaluate", "--galaxies", "30", "--out", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    figures = json.loads(lines[-1])
    assert {"rms_deg", "mae_deg", "reject_auc"} <= set(figures) and {"rms_deg", "mae_deg", "reject_auc"} <= set(figures["baseline"])
    assert json.loads((tmp_path / "evaluation.json").read_text())["galaxies"] == 30
    assert (tmp_path / "residuals.png").exists()
