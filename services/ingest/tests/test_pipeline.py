"""Whole ingests, FITS and HEALPix files written here -> tiles in the real local S3 server -> decoded back."""

from __future__ import annotations

from pathlib import Path

import healpy as hp
import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import FK5, SkyCoord
from astropy.io import fits

from nightshift.core.errors import InvalidInput, NotFound
from nightshift.core.store import ObjectStore
from nightshift.core.tiles import decode_tile
from nightshift.core.version import code_version
from nightshift.ingest.config import (
    BASE_CELL_COUNT,
    FitsBandSource,
    FitsIngest,
    FlatTiling,
    HealpixBandSource,
    HealpixIngest,
    HealpixTiling,
)
from nightshift.ingest.healpix_patches import patch_grid
from nightshift.ingest.pipeline import ingest_fits, ingest_healpix
from nightshift.ingest.sky import wcs_from_cards
from nightshift.ingest.synthetic import field_image, field_wcs, healpix_maps, write_field, write_healpix
from nightshift.ingest.tile_index import read_index
from nightshift.v1 import ingest_service_pb2, tile_pb2

SHAPE = (96, 128)
COARSE = HealpixTiling(patch_px=16, pixel_scale_arcmin=30.0, validation_cells=(10, 26, 39, 42), test_cells=(7,))


def fits_request(*sources: tuple[str, Path | tile_pb2.ObjectRef], tiling: FlatTiling | None = None, run_id: str = "night") -> FitsIngest:
    return FitsIngest(
        survey="glimpse", field="l030", run_id=run_id,
        bands=tuple(FitsBandSource(band=tile_pb2.Band(name=name), source=source) for name, source in sources),
        tiling=tiling or FlatTiling(window_px=(32,), overlap_fraction=0.25),
    )


def upload(store: ObjectStore, path: Path) -> tile_pb2.ObjectRef:
    return store.put_file(store.key("raw", path.name), path)


@pytest.fixture
def field(tmp_path: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """Two bands of one field on one grid; the first has no data in a corner larger than a 32 px window."""
    wcs = field_wcs(SHAPE, lon_deg=30.0, lat_deg=0.5)
    first, second = field_image(SHAPE, seed=1), field_image(SHAPE, seed=2)
    first[:40, :40] = np.nan
    return (write_field(tmp_path / "i4.fits", first, wcs), write_field(tmp_path / "m24.fits", second, wcs, unit="MJy/sr"),
            first, second)


def test_fits_pixels_come_back_exactly_with_wcs_centre_and_provenance(store: ObjectStore, field) -> None:
    path_a, path_b, first, second = field
    ref_a, ref_b = upload(store, path_a), upload(store, path_b)
    progress: list[ingest_service_pb2.IngestProgress] = []
    summary = ingest_fits(store, fits_request(("irac4", ref_a), ("mips24", ref_b)), progress=progress.append, shard_bytes=64 * 1024)
    tiles = read_index(store, summary.index_key)
    assert summary.tile_count == len(tiles) == 5 * 4 - 1  # 5 x 4 windows of 32 px at step 24, the one inside the NaN corner skipped
    assert len(summary.shard_keys) > 1 and summary.bytes_written > 0
    assert progress[0].tiles_total == 20 and progress[-1].tiles_done == summary.tile_count
    stack = np.stack([first, second])
    source_wcs = field_wcs(SHAPE, lon_deg=30.0, lat_deg=0.5)
    for tile in tiles:
        decoded = decode_tile(tile, store=store)
        x0, y0 = int(tile.labels["x_px"]), int(tile.labels["y_px"])
        np.testing.assert_array_equal(decoded.pixels, stack[:, y0:y0 + 32, x0:x0 + 32])
        wcs = wcs_from_cards(list(tile.wcs_cards))
        assert all(len(card) == 80 for card in tile.wcs_cards)
        np.testing.assert_allclose(wcs.pixel_to_world_values(3.0, 17.0), source_wcs.pixel_to_world_values(x0 + 3.0, y0 + 17.0), atol=1e-10)
        np.testing.assert_allclose([tile.center.lon_deg, tile.center.lat_deg], wcs.pixel_to_world_values(15.5, 15.5), atol=1e-10)
    tile = tiles[0]
    assert tile.center.frame == tile_pb2.SKY_FRAME_GALACTIC
    assert tile.pixel_scale_arcsec == pytest.approx(6.0)
    assert [b.name for b in tile.bands] == ["irac4", "mips24"] and tile.bands[1].unit == "MJy/sr"
    assert tile.missing_pixels == tile_pb2.MISSING_PIXELS_NAN
    assert tile.provenance.source_uri == f"s3://{store.bucket}/{ref_a.key}"
    assert tile.provenance.source_sha256 == ref_a.sha256
    assert (tile.provenance.ingest_run_id, tile.provenance.software_version) == ("night", code_version())
    assert [b.provenance.source_sha256 for b in tile.bands] == [ref_a.sha256, ref_b.sha256]
    assert tile.bands[1].provenance.source_uri == f"s3://{store.bucket}/{ref_b.key}"


def test_reingesting_writes_nothing_and_gives_identical_tiles(store: ObjectStore, field) -> None:
    path_a, *_ = field
    request = fits_request(("irac4", upload(store, path_a)))
    first = ingest_fits(store, request)
    keys = set(store.list_keys(store.key("ingest")))
    tiles = read_index(store, first.index_key)
    again = ingest_fits(store, request)
    assert again.bytes_written == 0
    assert (list(again.shard_keys), again.index_key) == (list(first.shard_keys), first.index_key)
    assert read_index(store, again.index_key) == tiles
    assert set(store.list_keys(store.key("ingest"))) == keys
    other_run = ingest_fits(store, fits_request(("irac4", upload(store, path_a)), run_id="next-night"))
    assert other_run.index_key != first.index_key and list(other_run.shard_keys) == list(first.shard_keys)
    assert [t.tile_id for t in read_index(store, other_run.index_key)] == [t.tile_id for t in tiles]


def test_other_parameters_give_other_tile_ids(store: ObjectStore, field) -> None:
    path_a, *_ = field
    ids = [
        {t.tile_id for t in read_index(store, ingest_fits(store, fits_request(("irac4", path_a), tiling=tiling)).index_key)}
        for tiling in (FlatTiling(window_px=(32,), overlap_fraction=0.25), FlatTiling(window_px=(32,), overlap_fraction=0.5))
    ]
    assert ids[0].isdisjoint(ids[1])


def test_bands_on_different_grids_are_aligned_to_the_reference(store: ObjectStore, tmp_path: Path) -> None:
    ref_wcs = field_wcs((64, 64), pixel_scale_arcsec=6.0)
    finer_wcs = field_wcs((96, 96), pixel_scale_arcsec=4.0)
    y, x = np.mgrid[0:96, 0:96]
    lon, lat = finer_wcs.pixel_to_world_values(x, y)
    plane = (50.0 + 400.0 * (lon - 30.0) - 300.0 * lat).astype(np.float32)  # linear on the sky: bilinear-exact
    request = FitsIngest(
        survey="s", field="f", run_id="r", reference_band="coarse",
        bands=(FitsBandSource(band=tile_pb2.Band(name="fine"), source=write_field(tmp_path / "fine.fits", plane, finer_wcs)),
               FitsBandSource(band=tile_pb2.Band(name="coarse"),
                              source=write_field(tmp_path / "coarse.fits", field_image((64, 64)), ref_wcs))),
        tiling=FlatTiling(window_px=(64,)),
    )
    (tile,) = read_index(store, ingest_fits(store, request).index_key)
    pixels = decode_tile(tile, store=store).pixels
    y, x = np.mgrid[0:64, 0:64]
    lon, lat = ref_wcs.pixel_to_world_values(x, y)
    np.testing.assert_allclose(pixels[0][8:-8, 8:-8], (50.0 + 400.0 * (lon - 30.0) - 300.0 * lat)[8:-8, 8:-8], atol=1e-3)
    assert tile.provenance.source_uri.endswith("coarse.fits")


def test_multi_scale_windows_resampled_to_one_output_size(store: ObjectStore, field) -> None:
    path_a, _, first, _ = field
    request = fits_request(("irac4", path_a), tiling=FlatTiling(window_px=(32, 64), overlap_fraction=0.0, output_px=16))
    tiles = read_index(store, ingest_fits(store, request).index_key)
    sizes = [t.labels["window_px"] for t in tiles]
    assert sizes.count("32") == 3 * 4 - 1 and sizes.count("64") == 2 * 2  # 3 x 4 and 2 x 2 windows, one in the NaN corner
    assert {tuple(t.pixels.shape) for t in tiles} == {(1, 16, 16)}
    big = next(t for t in tiles if t.labels["window_px"] == "64" and t.labels["x_px"] == "64" and t.labels["y_px"] == "32")
    assert big.pixel_scale_arcsec == pytest.approx(24.0)
    block = first[32:36, 64:68]
    np.testing.assert_allclose(decode_tile(big, store=store).pixels[0, 0, 0], block.mean(), rtol=1e-5)


def test_a_bad_band_fails_before_anything_is_written(store: ObjectStore, field, tmp_path: Path) -> None:
    path_a, *_ = field
    (tmp_path / "bad.fits").write_bytes(path_a.read_bytes()[:5000])
    with pytest.raises(InvalidInput, match=r"band 'mips24' \(file://.*bad.fits\): not a readable FITS file"):
        ingest_fits(store, fits_request(("irac4", path_a), ("mips24", tmp_path / "bad.fits")))
    assert list(store.list_keys(store.key("ingest"))) == []


def test_missing_sources_and_checksum_mismatches(store: ObjectStore, field) -> None:
    path_a, *_ = field
    with pytest.raises(NotFound, match="no-such.fits"):
        ingest_fits(store, fits_request(("irac4", path_a.with_name("no-such.fits"))))
    ref = upload(store, path_a)
    ref.sha256 = "0" * 64
    with pytest.raises(InvalidInput, match="does not match the request's 0000"):
        ingest_fits(store, fits_request(("irac4", ref)))


def healpix_request(path: Path, *, bands: int = 2, tiling: HealpixTiling = COARSE) -> HealpixIngest:
    return HealpixIngest(
        survey="planck", field="hfi", run_id="night", tiling=tiling,
        bands=tuple(HealpixBandSource(band=tile_pb2.Band(name=f"hfi{n}", unit="K_CMB"), source=path, field_index=n) for n in range(bands)),
    )


def test_healpix_patches_carry_cell_split_wcs_and_exact_pixels(store: ObjectStore, tmp_path: Path) -> None:
    maps = healpix_maps(64, 2, seed=3)
    path = write_healpix(tmp_path / "sky.fits", maps, nest=True)
    summary = ingest_healpix(store, healpix_request(upload(store, path)), shard_bytes=256 * 1024)
    tiles = read_index(store, summary.index_key)
    assert len(tiles) == summary.tile_count > 600
    splits: dict[str, set[int]] = {"train": set(), "validation": set(), "test": set()}
    for tile in tiles:
        assert (tile.healpix.nside, tile.healpix.ordering) == (2, tile_pb2.HEALPIX_ORDERING_NESTED)
        assert tile.healpix.pixel_index == hp.ang2pix(2, tile.center.lon_deg, tile.center.lat_deg, lonlat=True, nest=True)
        splits[tile.labels["split"]].add(tile.healpix.pixel_index)
    # disjoint and complete: every base cell in exactly one split, the split the tiling names
    assert splits["validation"] == {10, 26, 39, 42} and splits["test"] == {7}
    assert splits["train"] == set(range(BASE_CELL_COUNT)) - {7, 10, 26, 39, 42}
    for tile in tiles[:: len(tiles) // 7]:
        pixels = decode_tile(tile, store=store).pixels
        wcs = wcs_from_cards(list(tile.wcs_cards))
        y, x = np.mgrid[0:16, 0:16]
        lon, lat = wcs.pixel_to_world_values(x, y)
        nearest = hp.ang2pix(64, lon, lat, lonlat=True, nest=True)
        np.testing.assert_array_equal(pixels, maps[:, nearest])
        assert tile.center.frame == tile_pb2.SKY_FRAME_GALACTIC and tile.pixel_scale_arcsec == pytest.approx(1800.0)
        assert tile.bands[0].unit == "K_CMB"


def test_healpix_reingest_writes_nothing(store: ObjectStore, tmp_path: Path) -> None:
    path = write_healpix(tmp_path / "sky.fits", healpix_maps(32, 1))
    request = healpix_request(path, bands=1)
    first = ingest_healpix(store, request)
    again = ingest_healpix(store, request)
    assert again.bytes_written == 0 and list(again.shard_keys) == list(first.shard_keys)
    assert read_index(store, again.index_key) == read_index(store, first.index_key)


def test_patches_without_usable_pixels_are_skipped(store: ObjectStore, tmp_path: Path) -> None:
    maps = healpix_maps(32, 1)
    maps[0, : hp.nside2npix(32) // 2] = hp.UNSEEN  # the northern half
    summary = ingest_healpix(store, healpix_request(write_healpix(tmp_path / "half.fits", maps), bands=1))
    lats = [t.center.lat_deg for t in read_index(store, summary.index_key)]
    assert min(lats) == -90.0 and max(lats) < 10.0 and summary.tile_count < 0.6 * len(patch_grid(COARSE))


def test_bands_from_several_files_are_stacked_in_request_order(store: ObjectStore, tmp_path: Path) -> None:
    first, second = healpix_maps(16, 2, seed=1), healpix_maps(16, 1, seed=2)
    path_a, path_b = write_healpix(tmp_path / "a.fits", first), write_healpix(tmp_path / "b.fits", second)
    request = HealpixIngest(
        survey="planck", field="hfi", run_id="night", tiling=COARSE,
        bands=(HealpixBandSource(band=tile_pb2.Band(name="b0"), source=path_b, field_index=0),
               HealpixBandSource(band=tile_pb2.Band(name="a1"), source=path_a, field_index=1)),
    )
    tile = read_index(store, ingest_healpix(store, request).index_key)[100]
    lon, lat = wcs_from_cards(list(tile.wcs_cards)).pixel_to_world_values(*np.mgrid[0:16, 0:16][::-1])
    nearest = hp.ang2pix(16, lon, lat, lonlat=True)
    np.testing.assert_array_equal(decode_tile(tile, store=store).pixels, np.stack([second[0][nearest], first[1][nearest]]))


def test_bands_of_different_nside_are_invalid_input(store: ObjectStore, tmp_path: Path) -> None:
    low, high = write_healpix(tmp_path / "low.fits", healpix_maps(16, 1)), write_healpix(tmp_path / "high.fits", healpix_maps(32, 1))
    request = HealpixIngest(
        survey="planck", field="hfi", run_id="night", tiling=COARSE,
        bands=(HealpixBandSource(band=tile_pb2.Band(name="a"), source=low), HealpixBandSource(band=tile_pb2.Band(name="b"), source=high)),
    )
    with pytest.raises(InvalidInput, match=r"high.fits \(nside 32, RING.*does not match .*low.fits \(nside 16"):
        ingest_healpix(store, request)


def test_a_map_without_frame_needs_one_in_the_request(store: ObjectStore, tmp_path: Path) -> None:
    path = write_healpix(tmp_path / "nocoord.fits", healpix_maps(16, 1), coordsys=None)
    with pytest.raises(InvalidInput, match="nocoord.fits: the map has no COORDSYS"):
        ingest_healpix(store, healpix_request(path, bands=1))
    icrs = HealpixTiling(patch_px=16, pixel_scale_arcmin=30.0, frame=tile_pb2.SKY_FRAME_ICRS)
    tiles = read_index(store, ingest_healpix(store, healpix_request(path, bands=1, tiling=icrs)).index_key)
    assert tiles[0].center.frame == tile_pb2.SKY_FRAME_ICRS and "RA---TAN" in "".join(tiles[0].wcs_cards)


def test_fits_header_wcs_survives_the_contract(store: ObjectStore, tmp_path: Path) -> None:
    # an FK5 field: centres are reported in ICRS, cards keep the file's own frame
    wcs = field_wcs((40, 40), lon_deg=150.0, lat_deg=2.0, frame="icrs")
    wcs.wcs.radesys, wcs.wcs.equinox = "FK5", 2000.0
    path = tmp_path / "fk5.fits"
    fits.PrimaryHDU(field_image((40, 40), missing=False), header=wcs.to_header()).writeto(path)
    (tile,) = read_index(store, ingest_fits(store, fits_request(("g", path), tiling=FlatTiling(window_px=(40,)))).index_key)
    assert "FK5" in "".join(tile.wcs_cards)
    assert tile.center.frame == tile_pb2.SKY_FRAME_ICRS
    expected = SkyCoord(150.0 * u.deg, 2.0 * u.deg, frame=FK5(equinox="J2000")).icrs  # the image centre is CRVAL
    assert tile.center.lon_deg == pytest.approx(expected.ra.deg, abs=1e-9)
    assert tile.center.lat_deg == pytest.approx(expected.dec.deg, abs=1e-9)
