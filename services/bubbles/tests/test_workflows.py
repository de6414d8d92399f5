"""The command line's outer layer: synth writes FITS + truth, infer reads them back, evaluate prints one JSON line."""

import json

from astropy.io import fits
from astropy.table import Table
from regions import Regions

from nightshift.bubbles.cli import build_parser, main


def test_help_lists_every_command(capsys) -> None:
    help_text = build_parser().format_help()
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
