"""FITS reading, band alignment, windowing and resampling on files written here with known content."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.utils.exceptions import AstropyUserWarning
from astropy.wcs import WCS

from nightshift.core.errors import InvalidInput
from nightshift.ingest.config import FlatTiling
from nightshift.ingest.fits_tiling import (
    BandImage,
    Window,
    WindowWcs,
    align_bands,
    cut_windows,
    declared_image_px,
    plan_windows,
    read_fits_image,
    resample_area,
    window_count,
)
from nightshift.ingest.sky import pixel_scale_arcsec, wcs_from_cards
from nightshift.ingest.synthetic import field_image, field_wcs, write_field

HIGAL = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "filaments" / "higal_image.fits"


def band(pixels: np.ndarray, wcs: WCS, name: str = "b") -> BandImage:
    return BandImage(pixels=pixels, wcs=wcs, unit="", what=f"band {name!r}")


def test_float_image_is_read_bit_for_bit_with_its_wcs_and_unit(tmp_path: Path) -> None:
    shape = (40, 60)
    pixels, wcs = field_image(shape), field_wcs(shape)
    image = read_fits_image(write_field(tmp_path / "f.fits", pixels, wcs, unit="MJy/sr"), what="f")
    np.testing.assert_array_equal(image.pixels, pixels)  # NaN at the same places too
    assert image.pixels.dtype == np.float32
    assert image.unit == "MJy/sr"
    assert image.wcs.wcs.compare(wcs.wcs, tolerance=1e-12)


def test_scaled_integers_become_float32_with_blank_as_nan(tmp_path: Path) -> None:
    raw = np.arange(-50, 50, dtype=np.int16).reshape(10, 10)
    raw[3, 4] = -32768
    header = field_wcs(raw.shape).to_header()
    header.update(BSCALE=0.5, BZERO=100.0, BLANK=-32768)
    hdu = fits.PrimaryHDU(raw, header=header)
    hdu.header.update(BSCALE=0.5, BZERO=100.0, BLANK=-32768)  # astropy drops scaling keys on construction
    hdu.writeto(tmp_path / "int.fits")
    image = read_fits_image(tmp_path / "int.fits", what="int")
    expected = raw.astype(np.float32) * 0.5 + 100.0
    expected[3, 4] = np.nan
    np.testing.assert_array_equal(image.pixels, expected)


def test_multi_extension_file_by_name_index_or_first_celestial(tmp_path: Path) -> None:
    shape = (20, 20)
    first, second = field_image(shape, seed=1), field_image(shape, seed=2)
    fits.HDUList([
        fits.PrimaryHDU(),
        fits.ImageHDU(np.ones((4, 4), np.float32), name="NOWCS"),
        fits.ImageHDU(first, header=field_wcs(shape).to_header(), name="SCI"),
        fits.ImageHDU(second, header=field_wcs(shape).to_header(), name="ERR"),
    ]).writeto(tmp_path / "mef.fits")
    path = tmp_path / "mef.fits"
    np.testing.assert_array_equal(read_fits_image(path, what="m").pixels, first)
    np.testing.assert_array_equal(read_fits_image(path, hdu="ERR", what="m").pixels, second)
    np.testing.assert_array_equal(read_fits_image(path, hdu="3", what="m").pixels, second)
    with pytest.raises(InvalidInput, match="m: no HDU 'DQ'"):
        read_fits_image(path, hdu="DQ", what="m")
    with pytest.raises(InvalidInput, match="m: HDU 'NOWCS' has no celestial WCS"):
        read_fits_image(path, hdu="NOWCS", what="m")


def test_degenerate_third_axis_is_dropped(tmp_path: Path) -> None:
    pixels = field_image((16, 16))[None]
    header = field_wcs((16, 16)).to_header()
    header.update(WCSAXES=3, CTYPE3="FREQ", CRVAL3=1e9, CDELT3=1e6, CRPIX3=1.0, CUNIT3="Hz")
    fits.PrimaryHDU(pixels, header=header).writeto(tmp_path / "cube.fits")
    image = read_fits_image(tmp_path / "cube.fits", what="c")
    assert image.pixels.shape == (16, 16) and image.wcs.naxis == 2


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (lambda data: data[: len(data) // 2], "not a readable FITS file"),
        (lambda data: data[:2000], "not a readable FITS file"),
        (lambda data: b"SIMPLE  = nonsense" + bytes(3000), "not a readable FITS file"),
    ],
    ids=["truncated-data", "truncated-header", "corrupt"],
)
def test_corrupt_and_truncated_files_are_invalid_input_naming_the_file(tmp_path: Path, content, match: str) -> None:
    good = write_field(tmp_path / "good.fits", field_image((64, 64)), field_wcs((64, 64))).read_bytes()
    bad = tmp_path / "bad.fits"
    bad.write_bytes(content(good))
    with pytest.raises(InvalidInput, match=f"band 'x' \\(bad.fits\\): {match}"):
        read_fits_image(bad, what="band 'x' (bad.fits)")


def test_all_nan_image_is_invalid_input(tmp_path: Path) -> None:
    path = write_field(tmp_path / "nan.fits", np.full((8, 8), np.nan, np.float32), field_wcs((8, 8)))
    with pytest.raises(InvalidInput, match="every pixel is NaN"):
        read_fits_image(path, what="nan.fits")


@pytest.mark.skipif(not HIGAL.exists(), reason=f"real Hi-GAL cut-out not present at {HIGAL} (shared reference data)")
def test_real_higal_image_without_wcs_is_refused_and_with_one_is_read_exactly(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="higal_image.fits: the file has no celestial WCS"):
        read_fits_image(HIGAL, what=str(HIGAL))
    pixels = fits.getdata(HIGAL).astype(np.float32)
    assert np.isnan(pixels).any()  # the real file has saturated / missing pixels
    with_wcs = write_field(tmp_path / "higal_wcs.fits", pixels, field_wcs(pixels.shape, pixel_scale_arcsec=11.5), unit="cm-2")
    np.testing.assert_array_equal(read_fits_image(with_wcs, what="higal").pixels, pixels)


def test_bands_on_the_reference_grid_are_stacked_bit_for_bit() -> None:
    shape = (30, 30)
    wcs = field_wcs(shape)
    a, b = field_image(shape, seed=1), field_image(shape, seed=2)
    cube, ref_wcs = align_bands([band(a, wcs), band(b, wcs)], reference=1)
    np.testing.assert_array_equal(cube[0], a)
    np.testing.assert_array_equal(cube[1], b)
    assert ref_wcs is not None and cube.dtype == np.float32


def test_a_band_on_another_grid_is_resampled_onto_the_reference() -> None:
    # A sky plane linear in the tangent-plane coordinates is reproduced exactly by bilinear interpolation.
    ref_wcs = field_wcs((40, 40), pixel_scale_arcsec=6.0)
    other_wcs = field_wcs((50, 50), pixel_scale_arcsec=5.0)
    other_wcs.wcs.crpix = [27.3, 22.6]
    y, x = np.mgrid[0:50, 0:50]
    lon, lat = other_wcs.pixel_to_world_values(x, y)
    other = (3.0 + 100.0 * (lon - 30.0) + 70.0 * lat).astype(np.float32)
    cube, _ = align_bands([band(np.zeros((40, 40), np.float32), ref_wcs), band(other, other_wcs)], reference=0)
    y, x = np.mgrid[0:40, 0:40]
    lon, lat = ref_wcs.pixel_to_world_values(x, y)
    expected = 3.0 + 100.0 * (lon - 30.0) + 70.0 * lat
    covered = np.isfinite(cube[1])
    assert covered[5:-5, 5:-5].all()
    np.testing.assert_allclose(cube[1][covered], expected[covered], atol=2e-3)


def test_bands_that_do_not_overlap_are_invalid_input() -> None:
    here, elsewhere = field_wcs((20, 20), lon_deg=30.0), field_wcs((20, 20), lon_deg=50.0)
    images = [band(np.ones((20, 20), np.float32), here, "ref"), band(np.ones((20, 20), np.float32), elsewhere, "far")]
    with pytest.raises(InvalidInput, match="band 'far' does not overlap the reference band 'ref'"):
        align_bands(images, reference=0)


def test_plan_covers_every_pixel_at_every_scale() -> None:
    windows = plan_windows((70, 100), FlatTiling(window_px=(32, 64), overlap_fraction=0.25), what="f")
    for size in (32, 64):
        covered = np.zeros((70, 100), bool)
        for w in (w for w in windows if w.size_px == size):
            covered[w.y0:w.y0 + size, w.x0:w.x0 + size] = True
        assert covered.all()


def test_window_larger_than_the_image_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match=r"f.fits: window of 128 px is larger than the image \(100 x 70 px\)"):
        plan_windows((70, 100), FlatTiling(window_px=(64, 128)), what="f.fits")


def test_tile_wcs_maps_each_pixel_to_the_sky_position_of_the_source_pixel() -> None:
    shape = (50, 80)
    wcs = field_wcs(shape, lon_deg=120.0, lat_deg=-30.0, frame="icrs")
    cube = field_image(shape)[None]
    windows = [Window(x0=37, y0=11, size_px=24)]
    (tile,) = cut_windows(cube, wcs, windows)
    np.testing.assert_array_equal(tile.pixels[0], cube[0, 11:35, 37:61])
    y, x = np.mgrid[0:24, 0:24]
    np.testing.assert_allclose(wcs_from_cards(tile.wcs_cards).pixel_to_world_values(x, y), wcs.pixel_to_world_values(x + 37, y + 11),
                               atol=1e-10)


def _sip_wcs(shape: tuple[int, int]) -> WCS:
    header = field_wcs(shape).to_header()
    header.update({"CTYPE1": "GLON-TAN-SIP", "CTYPE2": "GLAT-TAN-SIP", "A_ORDER": 2, "B_ORDER": 2, "A_2_0": 2e-6, "B_0_2": -3e-6})
    return WCS(header)


@pytest.mark.parametrize("distorted", [False, True], ids=["linear", "sip"])
@pytest.mark.parametrize(("x0", "y0", "size_px", "output_px"), [(0, 0, 64, 0), (37, 11, 24, 0), (40, 8, 48, 16), (5, 9, 30, 20)])
def test_window_wcs_by_arithmetic_is_astropys_slice(distorted: bool, x0: int, y0: int, size_px: int, output_px: int) -> None:
    shape = (100, 120)
    wcs = _sip_wcs(shape) if distorted else field_wcs(shape, lon_deg=120.0, lat_deg=-30.0, frame="icrs")
    window_wcs = WindowWcs(wcs)
    assert window_wcs.linear is not distorted  # distortions take astropy's slice
    cards, scale = window_wcs.cards(Window(x0=x0, y0=y0, size_px=size_px), output_px)
    sliced = wcs.slice((slice(y0, y0 + size_px), slice(x0, x0 + size_px)))
    if output_px:
        factor = size_px / output_px
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyUserWarning)
            sliced = sliced.slice((slice(0, size_px, factor), slice(0, size_px, factor)))
    side = output_px or size_px
    y, x = np.mgrid[0:side, 0:side]
    np.testing.assert_allclose(wcs_from_cards(cards).pixel_to_world_values(x, y), sliced.pixel_to_world_values(x, y), atol=1e-11)
    assert scale == pytest.approx(pixel_scale_arcsec(sliced), rel=1e-12)
    assert all(len(card) == 80 for card in cards)


def test_resampled_tile_wcs_follows_the_area_mean() -> None:
    shape = (60, 60)
    wcs = field_wcs(shape)
    cube = field_image(shape, missing=False)[None]
    (tile,) = cut_windows(cube, wcs, [Window(x0=6, y0=12, size_px=30)], output_px=10)
    assert tile.pixels.shape == (1, 10, 10)
    np.testing.assert_allclose(tile.pixels[0, 2, 4], cube[0, 12 + 6:12 + 9, 6 + 12:6 + 15].mean(), rtol=1e-6)
    # output pixel k covers source pixels 3k..3k+2 of the window: its centre is source pixel 3k + 1
    np.testing.assert_allclose(wcs_from_cards(tile.wcs_cards).pixel_to_world_values(4, 2), wcs.pixel_to_world_values(6 + 13, 12 + 7), atol=1e-10)


def test_area_resampling_ignores_nan_and_handles_fractional_factors() -> None:
    pixels = np.arange(36, dtype=np.float32).reshape(1, 6, 6)
    np.testing.assert_array_equal(resample_area(pixels, 3)[0], pixels[0].reshape(3, 2, 3, 2).mean(axis=(1, 3)))
    with_nan = pixels.copy()
    with_nan[0, 0, 0] = np.nan
    with_nan[0, 4:, 4:] = np.nan
    halved = resample_area(with_nan, 3)[0]
    assert halved[0, 0] == pytest.approx((1 + 6 + 7) / 3)
    assert np.isnan(halved[2, 2])
    constant = np.full((2, 7, 7), 4.5, np.float32)
    np.testing.assert_allclose(resample_area(constant, 3), 4.5, rtol=1e-6)  # 7 -> 3: fractional overlaps
    ramp = np.tile(np.arange(7, dtype=np.float32), (7, 1))[None]
    # 7 -> 2: output pixels cover [0, 3.5) and [3.5, 7), pixel 3 half in each
    np.testing.assert_allclose(resample_area(ramp, 2)[0, 0], [(0 + 1 + 2 + 3 / 2) / 3.5, (3 / 2 + 4 + 5 + 6) / 3.5], rtol=1e-6)


def test_a_header_that_claims_more_than_the_file_or_the_limit_is_refused_before_reading(tmp_path: Path) -> None:
    header = field_wcs((64, 64)).to_header()
    for position, card in enumerate([("SIMPLE", True), ("BITPIX", -32), ("NAXIS", 2), ("NAXIS1", 10**6), ("NAXIS2", 10**6)]):
        header.insert(position, card)
    hostile = tmp_path / "hostile.fits"
    hostile.write_bytes(header.tostring().encode() + b"\0" * 2880)
    with pytest.raises(InvalidInput, match=r"declares 1000000 x 1000000 = 1000000000000 pixels, more than .* \(max_image_px\)"):
        read_fits_image(hostile, what="hostile.fits")
    with pytest.raises(InvalidInput, match=r"declares 4000000000000 bytes of pixels, the whole file holds 5760"):
        read_fits_image(hostile, what="hostile.fits", max_image_px=10**12)
    with pytest.raises(InvalidInput, match="max_image_px"):
        declared_image_px(hostile, what="hostile.fits")

    good = write_field(tmp_path / "good.fits", field_image((40, 50)), field_wcs((40, 50)))
    assert declared_image_px(good, what="good.fits") == 2000
    with pytest.raises(InvalidInput, match=r"declares 50 x 40 = 2000 pixels, more than the service's limit of 1999"):
        read_fits_image(good, what="good.fits", max_image_px=1999)


@pytest.mark.parametrize("shape, tiling", [((70, 100), FlatTiling(window_px=(32, 64), overlap_fraction=0.25)),
                                           ((128, 128), FlatTiling(window_px=(1, 7, 128), overlap_fraction=0.9)),
                                           ((50, 60), FlatTiling(window_px=(64,)))])
def test_window_count_counts_what_plan_windows_lays(shape: tuple[int, int], tiling: FlatTiling) -> None:
    laid = sum(len(plan_windows(shape, FlatTiling(window_px=(size,), overlap_fraction=tiling.overlap_fraction), what="f"))
               for size in tiling.window_px if size <= min(shape))
    assert window_count(shape, tiling) == laid
