"""The command line: help, and synth writing maps, truth and patches."""

from __future__ import annotations

import json

import healpy as hp
import numpy as np
import pytest
from astropy.table import Table

from nightshift.clusters.cli import main


def test_help_lists_every_command(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("synth", "train", "evaluate", "infer", "serve", "bench"):
        assert command in out


def test_synth_writes_maps_truth_and_patches(tmp_path, capsys) -> None:
    main(["synth", "--preset", "tiny", "--set", "nside=64", "--set", "random_clusters=20", "--output", str(tmp_path)])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    maps, header = hp.read_map(tmp_path / "sky_maps.fits", field=None, h=True)
    assert maps.shape == (6, hp.nside2npix(64)) and dict(header)["COORDSYS"] == "G"
    truth = Table.read(tmp_path / "truth.ecsv")
    assert len(truth) == summary["clusters"] and str(truth["theta500_arcmin"].unit) == "arcmin"
    with np.load(tmp_path / "patches.npz") as patches:
        assert patches["test_pixels"].shape[1:] == (6, 64, 64)


def test_infer_refuses_what_is_not_a_galactic_healpix_sky_in_one_line(tmp_path, capsys) -> None:
    """A text file, a map with 2 columns instead of 6, an equatorial map, an all-UNSEEN map and bad --cells:
    exit 2 and one line each, before any model runs."""
    (tmp_path / "notes.fits").write_text("not FITS")
    nside = 16
    npix = hp.nside2npix(nside)
    hp.write_map(str(tmp_path / "two.fits"), [np.zeros(npix)] * 2, coord="G", dtype=np.float32)
    hp.write_map(str(tmp_path / "icrs.fits"), [np.zeros(npix)] * 6, coord="C", dtype=np.float32)
    hp.write_map(str(tmp_path / "unseen.fits"), [np.full(npix, hp.UNSEEN)] * 6, coord="G", dtype=np.float32)
    expected = {"notes.fits": "not a HEALPix FITS map", "two.fits": "2 map columns, expected 6 bands",
                "icrs.fits": "COORDSYS 'C', expected Galactic maps", "unseen.fits": "no finite pixel", "missing.fits": "No such file"}
    for name, message in expected.items():
        assert main(["infer", str(tmp_path / name), "--output", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"nightshift-clusters: error: {tmp_path / name}: ") and message in err and err.count("\n") == 1
    assert main(["infer", str(tmp_path / "two.fits"), "--cells", "1,x", "--output", str(tmp_path / "out")]) == 2
    assert "--cells '1,x': expected comma-separated" in capsys.readouterr().err


def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.startswith("nightshift-clusters ")
