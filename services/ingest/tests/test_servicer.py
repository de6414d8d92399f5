"""IngestService through a real gRPC server on 127.0.0.1 and the real local S3 server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from astropy.io import fits
from grpc_health.v1 import health_pb2, health_pb2_grpc

from nightshift.core.server import BackgroundServer, ServerOptions
from nightshift.core.store import ObjectStore
from nightshift.core.tiles import decode_tile
from nightshift.ingest.servicer import INGEST_SERVICE_NAME, IngestServable
from nightshift.ingest.synthetic import field_image, field_wcs, healpix_maps, write_field, write_healpix
from nightshift.v1 import ingest_service_pb2, ingest_service_pb2_grpc, tile_pb2

SERVING = health_pb2.HealthCheckResponse.SERVING
HIGAL = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "filaments" / "higal_image.fits"


@pytest.fixture(scope="module")
def server(s3_server) -> Iterator[BackgroundServer]:
    with BackgroundServer(IngestServable(s3_server.store()), options=ServerOptions(port=0)) as running:
        yield running


@pytest.fixture(scope="module")
def channel(server: BackgroundServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.target) as opened:
        yield opened


@pytest.fixture
def stub(channel: grpc.Channel) -> ingest_service_pb2_grpc.IngestServiceStub:
    return ingest_service_pb2_grpc.IngestServiceStub(channel)


def health(channel: grpc.Channel, service: str = "") -> int:
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


def upload(store: ObjectStore, path: Path) -> tile_pb2.ObjectRef:
    return store.put_file(store.key("raw", path.name), path)


def fits_request(*refs: tuple[str, tile_pb2.ObjectRef], window_px: int = 32, run_id: str = "night") -> ingest_service_pb2.IngestFitsRequest:
    return ingest_service_pb2.IngestFitsRequest(
        survey="glimpse", field="l030", run_id=run_id,
        bands=[ingest_service_pb2.FitsBand(band=tile_pb2.Band(name=name), source=ref) for name, ref in refs],
        tiling=ingest_service_pb2.FlatTiling(window_px=[window_px], overlap_fraction=0.0),
    )


def healpix_request(ref: tile_pb2.ObjectRef, *, run_id: str = "night") -> ingest_service_pb2.IngestHealpixRequest:
    return ingest_service_pb2.IngestHealpixRequest(
        survey="planck", field="hfi", run_id=run_id,
        bands=[ingest_service_pb2.HealpixBand(band=tile_pb2.Band(name="hfi143"), source=ref)],
        tiling=ingest_service_pb2.HealpixTiling(patch_px=16, pixel_scale_arcmin=30.0, validation_cells=[10], test_cells=[7]),
    )


def test_health_names_the_ingest_service(channel: grpc.Channel) -> None:
    for service in ("", INGEST_SERVICE_NAME, "ingest", "liveness"):
        assert health(channel, service) == SERVING


def test_ingest_fits_streams_progress_then_the_summary_and_lists_its_tiles(stub, s3_server, tmp_path: Path) -> None:
    store = s3_server.store()
    pixels = field_image((64, 96), seed=5)
    ref = upload(store, write_field(tmp_path / "f.fits", pixels, field_wcs((64, 96))))
    events = list(stub.IngestFits(fits_request(("irac4", ref), run_id="fits-night"), timeout=60))
    assert all(e.WhichOneof("event") == "progress" for e in events[:-1]) and len(events) >= 2
    summary = events[-1].summary
    assert summary.tile_count == 2 * 3 and summary.run_id == "fits-night"
    listed = stub.ListTiles(ingest_service_pb2.ListTilesRequest(run_id="fits-night", page_size=4), timeout=10)
    assert len(listed.tiles) == 4 and listed.next_page_token
    rest = stub.ListTiles(ingest_service_pb2.ListTilesRequest(run_id="fits-night", page_token=listed.next_page_token), timeout=10)
    tiles = [*listed.tiles, *rest.tiles]
    assert len(tiles) == 6 and rest.next_page_token == ""
    first = next(t for t in tiles if t.labels["x_px"] == "32" and t.labels["y_px"] == "32")
    np.testing.assert_array_equal(decode_tile(first, store=store).pixels[0], pixels[32:64, 32:64])


def test_ingest_healpix_labels_splits_and_lists_them(stub, s3_server, tmp_path: Path) -> None:
    ref = upload(s3_server.store(), write_healpix(tmp_path / "sky.fits", healpix_maps(16, 1)))
    events = list(stub.IngestHealpix(healpix_request(ref, run_id="healpix-night"), timeout=60))
    summary = events[-1].summary
    validation = stub.ListTiles(ingest_service_pb2.ListTilesRequest(run_id="healpix-night", split="validation"), timeout=10)
    assert 0 < len(validation.tiles) < summary.tile_count
    assert {t.healpix.pixel_index for t in validation.tiles} == {10}


def write_truncated(tmp_path: Path) -> Path:
    good = write_field(tmp_path / "good.fits", field_image((64, 64)), field_wcs((64, 64)))
    (tmp_path / "truncated.fits").write_bytes(good.read_bytes()[:6000])
    return tmp_path / "truncated.fits"


def write_no_wcs(tmp_path: Path) -> Path:
    fits.PrimaryHDU(field_image((64, 64))).writeto(tmp_path / "nowcs.fits")
    return tmp_path / "nowcs.fits"


def write_bad_length(tmp_path: Path) -> Path:
    fits.BinTableHDU.from_columns([fits.Column(name="T", format="E", array=np.ones(1000, np.float32))]).writeto(tmp_path / "length.fits")
    return tmp_path / "length.fits"


def write_all_nan(tmp_path: Path) -> Path:
    return write_healpix(tmp_path / "allnan.fits", np.full((1, 12 * 16**2), np.nan, np.float32))


def write_corrupt(tmp_path: Path) -> Path:
    (tmp_path / "corrupt.fits").write_bytes(b"this is not FITS at all\n" * 200)
    return tmp_path / "corrupt.fits"


def fits_call(write: Callable[[Path], Path], *, window_px: int = 32):
    def call(stub, store: ObjectStore, tmp_path: Path):
        return list(stub.IngestFits(fits_request(("b", upload(store, write(tmp_path))), window_px=window_px), timeout=30))
    return call


def non_overlapping(stub, store: ObjectStore, tmp_path: Path):
    here = upload(store, write_field(tmp_path / "here.fits", field_image((32, 32)), field_wcs((32, 32), lon_deg=30.0)))
    far = upload(store, write_field(tmp_path / "far.fits", field_image((32, 32)), field_wcs((32, 32), lon_deg=60.0)))
    return list(stub.IngestFits(fits_request(("a", here), ("b", far)), timeout=30))


def healpix_call(write: Callable[[Path], Path]):
    def call(stub, store: ObjectStore, tmp_path: Path):
        return list(stub.IngestHealpix(healpix_request(upload(store, write(tmp_path))), timeout=30))
    return call


BAD_INPUTS = {
    "corrupt-fits": (fits_call(write_corrupt), "corrupt.fits): not a readable FITS file"),
    "truncated-fits": (fits_call(write_truncated), "truncated.fits): not a readable FITS file"),
    "no-celestial-wcs": (fits_call(write_no_wcs), "nowcs.fits): the file has no celestial WCS"),
    "bands-do-not-overlap": (non_overlapping, "far.fits) does not overlap the reference band 'a'"),
    "window-larger-than-image": (
        fits_call(lambda d: write_field(d / "small.fits", field_image((20, 30)), field_wcs((20, 30))), window_px=25),
        "small.fits): window of 25 px is larger than the image (30 x 20 px)",
    ),
    "invalid-healpix-length": (healpix_call(write_bad_length), "length.fits: not a readable HEALPix map (Wrong pixel number"),
    "all-nan-map": (healpix_call(write_all_nan), "allnan.fits: column 0 has no finite pixel"),
    "bad-tiling": (
        lambda stub, store, tmp: list(stub.IngestFits(ingest_service_pb2.IngestFitsRequest(
            survey="s", field="f", run_id="r", bands=[ingest_service_pb2.FitsBand(band=tile_pb2.Band(name="b"), source=tile_pb2.ObjectRef(key="k"))],
            tiling=ingest_service_pb2.FlatTiling(overlap_fraction=1.5)), timeout=10)),
        "overlap_fraction=1.5: expected a fraction in [0, 1)",
    ),
    "bad-page-token": (
        lambda stub, store, tmp: stub.ListTiles(ingest_service_pb2.ListTilesRequest(run_id="night", page_token="x"), timeout=10),
        "page_token 'x' was not issued",
    ),
}
if HIGAL.exists():  # real data: a Hi-GAL cut-out shipped without WCS
    BAD_INPUTS["real-higal-without-wcs"] = (fits_call(lambda _: HIGAL), "raw/higal_image.fits): the file has no celestial WCS")


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_invalid_argument_naming_the_file_and_the_server_keeps_serving(case: str, stub, channel, s3_server, tmp_path: Path) -> None:
    store = s3_server.store()
    call, message = BAD_INPUTS[case]
    before = set(store.list_keys(store.key("ingest", "runs", "night")))
    with pytest.raises(grpc.RpcError) as raised:
        call(stub, store, tmp_path)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, raised.value.details()
    assert message in raised.value.details()
    assert set(store.list_keys(store.key("ingest", "runs", "night"))) == before  # no index written
    assert health(channel) == health(channel, INGEST_SERVICE_NAME) == SERVING


def test_a_missing_source_is_not_found(stub) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        list(stub.IngestFits(fits_request(("b", tile_pb2.ObjectRef(key="raw/never-uploaded.fits"))), timeout=10))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert "raw/never-uploaded.fits" in raised.value.details()
