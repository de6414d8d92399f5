"""HEALPix reading, the patch grid, vectorised sampling against healpy.gnomview, and patch WCS."""

from __future__ import annotations

from pathlib import Path

import healpy as hp
import matplotlib
import numpy as np
import pytest
from astropy.io import fits

from nightshift.core.errors import InvalidInput
from nightshift.ingest.config import BASE_CELL_COUNT, HealpixTiling
from nightshift.ingest.healpix_patches import HealpixMaps, patch_grid, patch_wcs, read_healpix_fields, resolve_frame, sample_patches
from nightshift.ingest.synthetic import healpix_maps, write_healpix
from nightshift.v1 import tile_pb2

matplotlib.use("Agg")  # gnomview lives in healpy's plotting module
# healpy.gnomview styles its (unused) colour map with calls matplotlib is phasing out
pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")

GALACTIC, ICRS, UNSPECIFIED = tile_pb2.SKY_FRAME_GALACTIC, tile_pb2.SKY_FRAME_ICRS, tile_pb2.SKY_FRAME_UNSPECIFIED
# 8-degree patches: few enough to check the whole sphere quickly, large enough for curvature to matter
COARSE = HealpixTiling(patch_px=32, pixel_scale_arcmin=15.0)


def index_map(nside: int, *, nest: bool = False) -> HealpixMaps:
    """A map whose value is the pixel's own index (exact in float32 for nside <= 1024)."""
    return HealpixMaps(values=np.arange(hp.nside2npix(nside), dtype=np.float32)[None], nside=nside, nested=nest)


def test_fields_are_read_in_their_stored_ordering_with_unseen_as_nan(tmp_path: Path) -> None:
    maps = healpix_maps(16, 3, seed=4)
    maps[1, 7] = hp.UNSEEN
    maps[2, 9] = np.nan
    read = read_healpix_fields(write_healpix(tmp_path / "m.fits", maps, nest=True), [2, 1], what="m.fits")
    assert (read.nside, read.nested, read.coordsys) == (16, True, "G")
    assert read.ordering == tile_pb2.HEALPIX_ORDERING_NESTED
    expected = maps[[2, 1]].copy()
    expected[1, 7] = np.nan
    np.testing.assert_array_equal(read.values, expected)


def test_a_length_that_is_not_a_healpix_size_is_invalid_input(tmp_path: Path) -> None:
    column = fits.Column(name="T", format="E", array=np.ones(1000, np.float32))
    fits.BinTableHDU.from_columns([column]).writeto(tmp_path / "odd.fits")
    with pytest.raises(InvalidInput, match=r"odd.fits: not a readable HEALPix map \(Wrong pixel number \(it is not 12\*nside\*\*2\)"):
        read_healpix_fields(tmp_path / "odd.fits", [0], what="odd.fits")


def test_an_all_nan_column_is_invalid_input(tmp_path: Path) -> None:
    maps = healpix_maps(8, 2)
    maps[1] = hp.UNSEEN
    with pytest.raises(InvalidInput, match="nan.fits: column 1 has no finite pixel"):
        read_healpix_fields(write_healpix(tmp_path / "nan.fits", maps), [0, 1], what="nan.fits")


def test_a_missing_column_and_a_corrupt_file_are_invalid_input(tmp_path: Path) -> None:
    path = write_healpix(tmp_path / "m.fits", healpix_maps(8, 1))
    with pytest.raises(InvalidInput, match="m.fits: not a readable HEALPix map"):
        read_healpix_fields(path, [3], what="m.fits")
    corrupt = tmp_path / "corrupt.fits"
    corrupt.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(InvalidInput, match="corrupt.fits: not a readable HEALPix map"):
        read_healpix_fields(corrupt, [0], what="corrupt.fits")


@pytest.mark.parametrize(
    ("requested", "coordsys", "expected"),
    [(UNSPECIFIED, "G", GALACTIC), (UNSPECIFIED, "C", ICRS), (ICRS, "", ICRS), (GALACTIC, "GALACTIC", GALACTIC)],
)
def test_frame_comes_from_the_request_or_the_map(requested: int, coordsys: str, expected: int) -> None:
    assert resolve_frame(requested, coordsys, what="m") == expected


@pytest.mark.parametrize(
    ("requested", "coordsys", "match"),
    [(UNSPECIFIED, "", "has no COORDSYS"), (ICRS, "G", "requested but the map's COORDSYS is 'G'"), (GALACTIC, "E", "not supported")],
)
def test_unknown_or_conflicting_frames_are_invalid_input(requested: int, coordsys: str, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        resolve_frame(requested, coordsys, what="m")


def test_every_point_of_the_sphere_lies_in_some_patch() -> None:
    grid = patch_grid(COARSE)
    points = np.random.default_rng(0).normal(size=(20000, 3))
    lon, lat = hp.vec2ang(points, lonlat=True)
    inside = np.zeros(len(points), bool)
    half = COARSE.patch_px / 2
    for centre_lon, centre_lat in zip(grid.lon_deg, grid.lat_deg):
        wcs = patch_wcs(centre_lon, centre_lat, COARSE, GALACTIC)
        near = hp.rotator.angdist([centre_lon, centre_lat], [lon, lat], lonlat=True) < np.radians(10.0)
        x, y = wcs.world_to_pixel_values(lon[near], lat[near])
        inside[np.flatnonzero(near)[(np.abs(x - (half - 0.5)) <= half) & (np.abs(y - (half - 0.5)) <= half)]] = True
    assert inside.all(), f"{np.count_nonzero(~inside)} points in no patch"


def test_grid_patches_cover_every_base_cell_and_name_the_cell_of_their_centre() -> None:
    grid = patch_grid(HealpixTiling())
    assert np.bincount(grid.base_cell, minlength=BASE_CELL_COUNT).min() > 200  # 1.8-degree patches in 860 deg2 cells
    np.testing.assert_array_equal(grid.base_cell, hp.ang2pix(2, grid.lon_deg, grid.lat_deg, lonlat=True, nest=True))
    assert len(grid) < 1.25 * 41253 / HealpixTiling().patch_size_deg**2  # covering costs little beyond tiling


def test_overlap_adds_patches() -> None:
    assert len(patch_grid(HealpixTiling(overlap_fraction=0.5))) > 3 * len(patch_grid(HealpixTiling()))


@pytest.mark.parametrize("nest", [False, True])
@pytest.mark.parametrize(("lon", "lat"), [(30.0, 20.0), (200.0, -60.0), (10.0, 88.0), (300.0, -90.0)])
def test_patches_equal_gnomview_on_the_same_centre_and_scale(nest: bool, lon: float, lat: float) -> None:
    # gnomview also takes the nearest pixel: on a map of pixel indices the two agree pixel for pixel
    # except where a pixel centre falls on a HEALPix boundary to rounding.
    maps = index_map(64, nest=nest)
    tiling = HealpixTiling(patch_px=24, pixel_scale_arcmin=20.0)
    ours = sample_patches(maps, np.array([lon]), np.array([lat]), tiling)[0, 0]
    theirs = hp.gnomview(maps.values[0], rot=(lon, lat, 0.0), xsize=24, reso=20.0, nest=nest,
                         return_projected_map=True, no_plot=True)
    assert np.mean(ours == np.asarray(theirs)) > 0.995


def test_patches_of_a_smooth_map_agree_with_gnomview_to_interpolation_tolerance() -> None:
    nside = 256
    lon, lat = hp.pix2ang(nside, np.arange(hp.nside2npix(nside)), lonlat=True)
    smooth = (np.sin(np.radians(3 * lon)) * np.cos(np.radians(2 * lat))).astype(np.float32)
    maps = HealpixMaps(values=np.stack([smooth, 2 * smooth]), nside=nside, nested=False)
    tiling = HealpixTiling(patch_px=32, pixel_scale_arcmin=10.0)
    patches = sample_patches(maps, np.array([45.0, 120.0]), np.array([10.0, -45.0]), tiling)
    pixel_size_rad = hp.nside2resol(nside)
    for patch, centre in zip(patches, [(45.0, 10.0), (120.0, -45.0)]):
        theirs = np.asarray(hp.gnomview(smooth, rot=(*centre, 0.0), xsize=32, reso=10.0, return_projected_map=True, no_plot=True))
        # nearest-pixel sampling errs by at most the gradient (|d/dx| <= 3.6 per rad) over a pixel
        np.testing.assert_allclose(patch[0], theirs, atol=3.6 * pixel_size_rad)
        np.testing.assert_array_equal(patch[1], 2 * patch[0])


def test_patch_wcs_maps_each_pixel_to_the_healpix_pixel_sampled() -> None:
    maps = index_map(128)
    tiling = HealpixTiling(patch_px=20, pixel_scale_arcmin=30.0)
    for lon, lat, frame in [(75.0, 33.0, GALACTIC), (250.0, -70.0, ICRS), (40.0, 90.0, GALACTIC), (40.0, -90.0, ICRS)]:
        patch = sample_patches(maps, np.array([lon]), np.array([lat]), tiling)[0, 0]
        wcs = patch_wcs(lon, lat, tiling, frame)
        y, x = np.mgrid[0:20, 0:20]
        world_lon, world_lat = wcs.pixel_to_world_values(x, y)
        np.testing.assert_array_equal(patch, hp.ang2pix(128, world_lon, world_lat, lonlat=True))
        assert list(wcs.wcs.ctype) == (["GLON-TAN", "GLAT-TAN"] if frame == GALACTIC else ["RA---TAN", "DEC--TAN"])


def test_missing_map_pixels_stay_nan_in_patches() -> None:
    maps = index_map(32)
    maps.values[0, : hp.nside2npix(32) // 2] = np.nan  # the northern half (RING order)
    patches = sample_patches(maps, np.array([0.0, 0.0]), np.array([60.0, -60.0]), HealpixTiling(patch_px=8, pixel_scale_arcmin=30.0))
    assert np.isnan(patches[0]).all() and np.isfinite(patches[1]).all()
