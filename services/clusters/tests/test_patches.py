"""Gnomonic patches: sampling agrees with the attached WCS; tiling, targets and ImageTiles."""

from __future__ import annotations

import healpy as hp
import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from nightshift.clusters.patches import (
    cell_tiling, disk_targets, image_tiles, patch_wcs, sample_patches, sky_to_patch_pixels,
)
from nightshift.clusters.simulate import ClusterTruth
from nightshift.v1 import tile_pb2


@pytest.mark.parametrize(("lon", "lat"), [(10.0, 20.0), (250.0, -63.0), (0.2, 88.0)])
def test_sampled_pixels_are_the_healpix_pixels_under_the_wcs(lon: float, lat: float) -> None:
    nside = 512
    index_map = np.arange(hp.nside2npix(nside), dtype=np.float64)[None]
    patch = sample_patches(index_map, np.array([lon]), np.array([lat]), patch_px=16, pixel_arcmin=5.0)[0, 0]
    wcs = patch_wcs(lon, lat, patch_px=16, pixel_arcmin=5.0)
    rows, cols = np.mgrid[0:16, 0:16]
    world = wcs.pixel_to_world(cols.ravel(), rows.ravel())
    expected = hp.ang2pix(nside, world.l.deg, world.b.deg, lonlat=True)
    assert np.mean(expected == patch.ravel().astype(int)) > 0.98  # the rest sit on pixel borders


def test_sky_to_patch_pixels_inverts_the_wcs() -> None:
    wcs = patch_wcs(120.0, -30.0, patch_px=64, pixel_arcmin=1.7)
    world = wcs.pixel_to_world(np.array([3.0, 40.5, 63.0]), np.array([10.0, 31.5, 0.0]))
    x, y = sky_to_patch_pixels(120.0, -30.0, world.l.deg, world.b.deg, patch_px=64, pixel_arcmin=1.7)
    np.testing.assert_allclose(x, [3.0, 40.5, 63.0], atol=1e-6)
    np.testing.assert_allclose(y, [10.0, 31.5, 0.0], atol=1e-6)


def test_cell_tiling_stays_in_its_cells() -> None:
    lon, lat = cell_tiling([7, 10], 16)
    assert len(lon) == 2 * 64
    assert set(hp.ang2pix(2, lon, lat, lonlat=True, nest=True)) == {7, 10}
    with pytest.raises(ValueError, match="tiling_nside=3"):
        cell_tiling([7], 3)


def _truth(glon: list[float], glat: list[float], snr: list[float]) -> ClusterTruth:
    n = len(glon)
    return ClusterTruth(glon=np.array(glon), glat=np.array(glat), m500_msun=np.full(n, 5e14), z=np.full(n, 0.2),
                        theta500_arcmin=np.full(n, 5.0), y5r500_arcmin2=np.full(n, 1e-3), snr=np.array(snr),
                        base_cell=np.zeros(n, int), psz2_analogue=np.full(n, ""))


def test_disk_targets_are_disks_at_labelled_clusters_only(tiny_config) -> None:
    truth = _truth([50.0, 50.2], [10.0, 10.0], [9.0, 1.0])  # the second is below target_min_snr
    targets = disk_targets(np.array([50.0]), np.array([10.0]), truth, tiny_config)
    radius_px = tiny_config.disk_radius_arcmin / tiny_config.pixel_scale_arcmin
    assert targets.shape == (1, 64, 64) and targets.dtype == np.uint8
    assert targets.sum() == pytest.approx(np.pi * radius_px**2, rel=0.25)
    rows, cols = np.nonzero(targets[0])
    assert rows.mean() == pytest.approx(31.5, abs=0.6) and cols.mean() == pytest.approx(31.5, abs=0.6)


def test_image_tiles_carry_wcs_bands_and_base_cell(tiny_splits, tiny_config, store) -> None:
    test = tiny_splits["test"]
    tiles = image_tiles(test, tiny_config, field="unit", store=store, inline_limit_bytes=0)
    tile = tiles[0]
    assert tile.pixels.WhichOneof("storage") == "object_ref"
    assert [b.name for b in tile.bands] == list(tiny_config.band_names)
    assert [b.unit for b in tile.bands][:2] == ["K_CMB", "K_CMB"] and tile.bands[5].unit == "MJy/sr"
    assert tile.healpix.nside == 2 and tile.healpix.ordering == tile_pb2.HEALPIX_ORDERING_NESTED
    assert tile.healpix.pixel_index == 7 and tile.center.frame == tile_pb2.SKY_FRAME_GALACTIC
    wcs = WCS(fits.Header.fromstring("".join(tile.wcs_cards)))
    centre = wcs.pixel_to_world(31.5, 31.5)
    assert centre.l.deg == pytest.approx(tile.center.lon_deg) and centre.b.deg == pytest.approx(tile.center.lat_deg)
    assert tile.pixel_scale_arcsec == pytest.approx(102.0)
