"""Typed requests: validation messages and the contract's defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from nightshift.core.errors import InvalidInput
from nightshift.ingest.config import (
    FitsBandSource,
    FitsIngest,
    FlatTiling,
    HealpixIngest,
    HealpixTiling,
    IngestLimits,
    check_name,
    source_uri,
)
from nightshift.v1 import ingest_service_pb2, tile_pb2


def band(name: str) -> FitsBandSource:
    return FitsBandSource(band=tile_pb2.Band(name=name), source=Path(f"{name}.fits"))


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: FlatTiling(window_px=()), r"window_px=\[\]: expected one or more sizes"),
        (lambda: FlatTiling(window_px=(0,)), r"window_px=\[0\]"),
        (lambda: FlatTiling(overlap_fraction=1.0), r"overlap_fraction=1.0: expected a fraction in \[0, 1\)"),
        (lambda: FlatTiling(output_px=-1), "output_px=-1"),
        (lambda: HealpixTiling(patch_px=1), "patch_px=1: expected at least 2"),
        (lambda: HealpixTiling(pixel_scale_arcmin=0.0), "pixel_scale_arcmin=0.0"),
        (lambda: HealpixTiling(patch_px=4000, pixel_scale_arcmin=2.0), "spans 90 deg or more"),
        (lambda: HealpixTiling(validation_cells=(48,)), r"validation_cells=\[48\]: cells \[48\] are not nside=2 base cells"),
        (lambda: HealpixTiling(validation_cells=(7, 10), test_cells=(7,)), r"base cells \[7\] are both validation and test"),
        (lambda: HealpixTiling(frame=9), "frame=9"),
        (lambda: FitsIngest(survey="s", field="f", run_id="r", bands=()), "no bands given"),
        (lambda: FitsIngest(survey="s", field="f", run_id="r", bands=(band("a"), band("a"))), r"band names \['a', 'a'\] repeat"),
        (lambda: FitsIngest(survey="s", field="f", run_id="r", bands=(band("a"),), reference_band="z"), "reference_band='z' is not one of"),
        (lambda: FitsIngest(survey="", field="f", run_id="r", bands=(band("a"),)), "survey=''"),
        (lambda: HealpixIngest(survey="s", field="f/../x", run_id="r", bands=()), r"field='f/\.\./x'"),
    ],
)
def test_invalid_parameters_are_named_with_what_was_expected(build, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        build()


def test_names_that_can_be_key_segments() -> None:
    assert check_name("run_id", "2026-11-21") == "2026-11-21"
    assert check_name("field", "l030.5_b-0") == "l030.5_b-0"
    for bad in ("", ".hidden", "a/b", "a b", "é"):
        with pytest.raises(InvalidInput):
            check_name("field", bad)


def test_splits_follow_the_cells() -> None:
    tiling = HealpixTiling()
    assert (tiling.validation_cells, tiling.test_cells) == ((10, 26, 39, 42), (7,))  # the cluster seed's split
    assert [tiling.split_of(c) for c in (7, 10, 26, 39, 42, 0, 47)] == ["test", *["validation"] * 4, "train", "train"]
    assert tiling.patch_size_deg == pytest.approx(64 * 1.7 / 60)


def test_requests_from_the_contract_take_defaults_for_unset_sizes() -> None:
    fits_request = ingest_service_pb2.IngestFitsRequest(
        survey="glimpse", field="l030", run_id="2026-11-21",
        bands=[ingest_service_pb2.FitsBand(band=tile_pb2.Band(name="irac4"), source=tile_pb2.ObjectRef(key="raw/a.fits"), hdu="SCI")],
    )
    ingest = FitsIngest.from_proto(fits_request)
    assert ingest.tiling == FlatTiling(window_px=(256,), overlap_fraction=0.0)
    assert ingest.reference == "irac4" and ingest.bands[0].hdu == "SCI"
    healpix_request = ingest_service_pb2.IngestHealpixRequest(
        survey="planck", field="hfi", run_id="n",
        bands=[ingest_service_pb2.HealpixBand(band=tile_pb2.Band(name="hfi143"), source=tile_pb2.ObjectRef(key="raw/m.fits"), field_index=2)],
        tiling=ingest_service_pb2.HealpixTiling(test_cells=[3]),
    )
    healpix = HealpixIngest.from_proto(healpix_request)
    assert (healpix.tiling.patch_px, healpix.tiling.pixel_scale_arcmin) == (64, 1.7)
    assert (healpix.tiling.validation_cells, healpix.tiling.test_cells) == ((), (3,))
    assert healpix.bands[0].field_index == 2


def test_a_band_source_needs_a_key() -> None:
    request = ingest_service_pb2.IngestFitsRequest(
        survey="s", field="f", run_id="r", bands=[ingest_service_pb2.FitsBand(band=tile_pb2.Band(name="b"))]
    )
    with pytest.raises(InvalidInput, match="band 'b': source has no object key"):
        FitsIngest.from_proto(request)


def test_source_uris(tmp_path: Path) -> None:
    assert source_uri(tile_pb2.ObjectRef(bucket="raw", key="night/f.fits")) == "s3://raw/night/f.fits"
    assert source_uri(tmp_path / "f.fits") == f"file://{tmp_path}/f.fits"


def test_ingest_limits_come_from_the_environment_and_are_checked() -> None:
    limits = IngestLimits.from_env({"NIGHTSHIFT_INGEST_MAX_PATCH_PX": "128", "NIGHTSHIFT_INGEST_MIN_PIXEL_SCALE_ARCMIN": "0.5"},
                                   max_tiles=10)
    assert (limits.max_patch_px, limits.min_pixel_scale_arcmin, limits.max_tiles) == (128, 0.5, 10)
    assert limits.max_window_px == IngestLimits.max_window_px and limits.memory_bytes == 0
    with pytest.raises(ValueError, match="max_tiles=0: expected a positive number"):
        IngestLimits(max_tiles=0)

    with pytest.raises(InvalidInput, match=r"output_px=4096: the service's limit is 2048 px \(max_window_px\)"):
        IngestLimits().check_flat(FlatTiling(output_px=4096))
    IngestLimits().check_flat(FlatTiling(window_px=(2048, 64), output_px=2048))
    with pytest.raises(InvalidInput, match=r"patch_px=256: the service's limit is 128 px"):
        limits.check_healpix(HealpixTiling(patch_px=256))
    with pytest.raises(InvalidInput, match=r"pixel_scale_arcmin=0.1: .* 0.5 arcmin at the finest \(min_pixel_scale_arcmin\)"):
        limits.check_healpix(HealpixTiling(pixel_scale_arcmin=0.1))
    # 64 px of 1.7 arcmin: about 1.8 deg a side, some 12 500 patches over the sphere
    with pytest.raises(InvalidInput, match=r"about 1.25e\+04 patches: the service's limit is 10 per request \(max_tiles\)"):
        limits.check_healpix(HealpixTiling())
    IngestLimits().check_healpix(HealpixTiling())
