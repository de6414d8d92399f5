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
