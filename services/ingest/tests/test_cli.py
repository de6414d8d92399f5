"""The command line, in-process, against the real local S3 server."""

from __future__ import annotations

import dataclasses
import json
import uuid
from pathlib import Path

import pytest

from nightshift.ingest.cli import main
from nightshift.ingest.synthetic import field_image, field_wcs, healpix_maps, write_field, write_healpix


@pytest.fixture
def s3_env(s3_server, monkeypatch: pytest.MonkeyPatch) -> None:
    config = dataclasses.replace(s3_server.config, prefix=f"cli-{uuid.uuid4().hex[:8]}")
    for name, value in config.to_env().items():
        monkeypatch.setenv(name, value)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out.splitlines(), err


def test_help_names_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    usage = capsys.readouterr().out
    assert all(command in usage for command in ("serve", "ingest", "list", "bench"))


def test_ingest_a_fits_field_then_list_it(s3_env: None, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = write_field(tmp_path / "i4.fits", field_image((64, 64)), field_wcs((64, 64)), unit="MJy/sr")
    status, out, err = run(capsys, "ingest", "fits", "--survey", "glimpse", "--field", "l030", "--run-id", "n1",
                           "--band", f"irac4={path}[0]", "--wavelength-um", "irac4=8.0", "--window-px", "32", "--overlap", "0")
    assert status == 0, err
    summary = json.loads(out[-1])
    assert (summary["tile_count"], summary["run_id"], summary["shards"]) == (4, "n1", 1)
    status, out, _ = run(capsys, "list", "--run-id", "n1", "--page-size", "3")
    tiles = [json.loads(line) for line in out]
    assert status == 0 and len(tiles) == 4
    assert tiles[0]["bands"] == ["irac4"] and tiles[0]["shape"] == [1, 32, 32] and tiles[0]["frame"] == "SKY_FRAME_GALACTIC"


def test_ingest_a_healpix_map_with_the_seed_split(s3_env: None, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = write_healpix(tmp_path / "sky.fits", healpix_maps(16, 2))
    status, out, err = run(capsys, "ingest", "healpix", "--survey", "planck", "--field", "hfi", "--run-id", "n2",
                           "--band", f"hfi143={path}[0]", "--band", f"hfi217={path}[1]", "--unit", "hfi143=K_CMB",
                           "--patch-px", "16", "--pixel-scale-arcmin", "30")
    assert status == 0, err
    status, out, _ = run(capsys, "list", "--run-id", "n2", "--split", "test")
    tiles = [json.loads(line) for line in out]
    assert tiles and all(t["labels"]["split"] == "test" for t in tiles) and tiles[0]["bands"] == ["hfi143", "hfi217"]


def test_bad_input_exits_2_with_the_message(s3_env: None, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "junk.fits").write_bytes(b"junk" * 1000)
    status, _, err = run(capsys, "ingest", "fits", "--survey", "s", "--field", "f", "--band", f"b={tmp_path / 'junk.fits'}")
    assert status == 2 and "junk.fits): not a readable FITS file" in err
    status, _, err = run(capsys, "ingest", "fits", "--survey", "s", "--field", "f", "--band", "no-equals-sign")
    assert status == 2 and "expected NAME=SOURCE" in err


def test_an_unconfigured_store_exits_2(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NIGHTSHIFT_S3_ENDPOINT", raising=False)
    status, _, err = run(capsys, "list", "--run-id", "n")
    assert status == 2 and "NIGHTSHIFT_S3_ENDPOINT" in err
