"""The services' shared command line: options, --version, one-line errors with exit status 2, warnings, and
a summary over many inputs; the shared reader of the users' image files."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from nightshift.core.command import CommandLine, InputWarning, Inputs
from nightshift.core.errors import InvalidInput, StoreUnavailable
from nightshift.core.inputs import check_pixels, read_fits_image, read_picture


def _cli(run) -> CommandLine:
    cli = CommandLine("nightshift-test", "a test command", distribution="nightshift-core")
    command = cli.command("go", run, "run the test")
    cli.inputs(command, "files")
    cli.output(command, "out", "where")
    cli.overrides(command)
    return cli


def test_version_names_the_program_and_the_package_version(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _cli(lambda args: 0).main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.startswith("nightshift-test ")


def test_the_shared_options_parse_the_same_everywhere() -> None:
    seen = {}
    assert _cli(lambda args: seen.update(vars(args))).main(["go", "a.fits", "b.fits", "--out", "d", "--set", "epochs=3"]) == 0
    assert seen["inputs"] == [Path("a.fits"), Path("b.fits")] and seen["output"] == Path("d") and seen["set"] == {"epochs": "3"}


def test_a_malformed_override_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _cli(lambda args: 0).main(["go", "a", "--set", "epochs"])
    assert exit_info.value.code == 2 and "expected FIELD=JSON_VALUE" in capsys.readouterr().err


@pytest.mark.parametrize(("error", "status", "line"), [
    (InvalidInput("x.fits: empty image"), 2, "nightshift-test: error: x.fits: empty image"),
    (FileNotFoundError(2, "No such file or directory", "gone.fits"), 2, "nightshift-test: error: gone.fits: No such file or directory"),
    (PermissionError(13, "Permission denied", "/out"), 2, "nightshift-test: error: /out: Permission denied"),
    (StoreUnavailable("127.0.0.1:9 after 5 attempts"), 1, "nightshift-test: error: StoreUnavailable: 127.0.0.1:9 after 5 attempts"),
    (OSError(28, "No space left on device", "/out/x"), 1, "nightshift-test: error: /out/x: No space left on device"),
])
def test_errors_are_one_line_with_their_exit_status(error, status, line, capsys) -> None:
    def fail(args):
        raise error

    assert _cli(fail).main(["go", "a"]) == status
    assert capsys.readouterr().err == line + "\n"


def test_a_bug_keeps_its_traceback() -> None:
    def bug(args):
        raise ZeroDivisionError("a bug")

    with pytest.raises(ZeroDivisionError):
        _cli(bug).main(["go", "a"])


def test_many_inputs_go_on_past_a_bad_one_and_end_with_a_summary(capsys) -> None:
    def read(path: Path) -> str:
        if path.name == "bad":
            raise InvalidInput(f"{path}: not an image")
        warnings.warn(f"{path}: no WCS", InputWarning)
        return path.name.upper()

    def run(args) -> int:
        inputs = Inputs(args.inputs)
        assert [value for _, value in inputs.each(read)] == ["A", "C"]
        assert inputs.summary() == {"inputs": 3, "done": 2, "failed": {"bad": "bad: not an image"}}
        return inputs.exit_status()

    assert _cli(run).main(["go", "a", "bad", "c"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "nightshift-test: warning: a: no WCS", "nightshift-test: error: bad: not an image", "nightshift-test: warning: c: no WCS",
        "nightshift-test: 3 inputs: 2 done, 1 failed"]


def test_when_every_input_is_bad_the_command_fails_with_exit_2(capsys) -> None:
    def read(path: Path) -> None:
        raise InvalidInput(f"{path}: not an image")

    assert _cli(lambda args: Inputs(args.inputs).each(read)).main(["go", "x", "y"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == "nightshift-test: error: none of the 2 inputs could be used"


# -- reading the users' files ---------------------------------------------------------------------


def test_a_file_that_is_not_fits_is_invalid_input(tmp_path) -> None:
    jpeg = tmp_path / "photo.fits"
    jpeg.write_bytes(b"\xff\xd8\xff\xe0" + bytes(100))
    with pytest.raises(InvalidInput, match="photo.fits: not a readable FITS image"):
        read_fits_image(jpeg)
    with pytest.raises(InvalidInput, match="not a readable picture"):
        read_picture(jpeg)
    with pytest.raises(FileNotFoundError):
        read_fits_image(tmp_path / "missing.fits")


def test_a_fits_file_without_an_image_is_invalid_input(tmp_path) -> None:
    path = tmp_path / "table.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns([fits.Column("a", "E", array=np.ones(3))])]).writeto(path)
    with pytest.raises(InvalidInput, match="no image HDU"):
        read_fits_image(path)


def test_integer_pixels_are_read_as_float_with_a_warning_and_degenerate_axes_dropped(tmp_path) -> None:
    path = tmp_path / "int.fits"
    fits.PrimaryHDU(np.arange(2 * 3, dtype=np.int16).reshape(1, 2, 3)).writeto(path)
    with pytest.warns(InputWarning, match="integer pixels"):
        image = read_fits_image(path)
    assert image.data.dtype == np.float32 and image.data.shape == (2, 3) and image.data[1, 2] == 5


def _header(unit: str | None, *, wcs: bool) -> fits.Header:
    header = WCS(naxis=2)
    header.wcs.ctype = ["GLON-CAR", "GLAT-CAR"] if wcs else ["", ""]
    result = header.to_header() if wcs else fits.Header()
    if unit is not None:
        result["BUNIT"] = unit
    return result


@pytest.mark.parametrize(("data", "message"), [
    (np.zeros((0, 5), np.float32), "empty image"),
    (np.full((32, 32), np.nan, np.float32), "no finite pixel"),
    (np.ones((20, 20), np.float32), "20x20 pixels, smaller than the 32 x 32"),
    (np.ones((2, 32, 32), np.float32), "expected 1 plane"),
])
def test_pixels_a_model_cannot_use_are_refused(data, message) -> None:
    with pytest.raises(InvalidInput, match=message):
        check_pixels("map.fits", data, min_px=32, planes=1)


def test_what_the_model_can_use_but_the_user_should_know_is_warned() -> None:
    mostly_missing = np.ones((32, 32), np.float32)
    mostly_missing[:20] = np.nan
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_pixels("a.fits", mostly_missing, min_px=32, header=_header("MJy/sr", wcs=False), units=("cm-2",))
    messages = [str(w.message) for w in caught]
    assert messages == ["a.fits: 62% of the pixels are NaN or infinite",
                        "a.fits: BUNIT 'MJy/sr' where the model expects cm-2; the pixels are used as they are",
                        "a.fits: no celestial WCS: its sky positions are NaN"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean input warns of nothing
        check_pixels("b.fits", np.ones((32, 32), np.float32), min_px=32, header=_header("cm^-2", wcs=True), units=("cm-2", "cm^-2"))
