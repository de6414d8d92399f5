"""Bad input is the caller's error, never the night's: hostile files and requests against a real ingest process.

A FITS file whose header lies about its size, and tilings far beyond what one request may ask, are
answered INVALID_ARGUMENT naming the problem (never INTERNAL, never an allocation that kills the
service); a request beyond the memory budget RESOURCE_EXHAUSTED; an ingest past its deadline stops
working. In a real night the hostile file is quarantined and the rest of the night is published.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import healpy as hp
import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from grpc_health.v1 import health_pb2

from nightshift.core.client import TaskClient
from nightshift.orchestration.config import NightConfig
from nightshift.orchestration.ingest import IngestClient
from nightshift.orchestration.launcher import LocalNight, RunningService, ingest_command
from nightshift.orchestration.layout import NightLayout
from nightshift.orchestration.nightly import nightly
from nightshift.orchestration.simulate import simulate_night
from nightshift.v1 import ingest_service_pb2, tile_pb2

pytestmark = pytest.mark.reliability

MEMORY_BYTES = 8 * 2**20  # the ingest's per-request memory budget in these tests: a 1024 x 1024 field is beyond it


def hostile_fits(naxis_px: int = 1_000_000) -> bytes:
    """A 5760-byte FITS file (one header block, one data block) whose header claims naxis_px x naxis_px float32 pixels."""
    header = _wcs(naxis_px).to_header()
    header.insert(0, ("SIMPLE", True))
    header.insert(1, ("BITPIX", -32))
    header.insert(2, ("NAXIS", 2))
    header.insert(3, ("NAXIS1", naxis_px))
    header.insert(4, ("NAXIS2", naxis_px))
    return header.tostring().encode() + b"\0" * 2880


def _wcs(size_px: int) -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["GLON-TAN", "GLAT-TAN"]
    wcs.wcs.crval = [30.0, 0.0]
    wcs.wcs.crpix = [(size_px + 1) / 2] * 2
    wcs.wcs.cdelt = [-1.2 / 3600, 1.2 / 3600]
    return wcs


def _field(path: Path, size_px: int) -> Path:
    fits.PrimaryHDU(np.random.default_rng(0).normal(60, 2, (size_px, size_px)).astype(np.float32),
                    header=_wcs(size_px).to_header()).writeto(path)
    return path


@pytest.fixture(scope="module")
def ingest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalNight, dict[str, tile_pb2.ObjectRef]]]:
    """An ingest service process (its memory budget ``MEMORY_BYTES``) and the sources in its store: a good
    128 px field, a 1024 px field beyond the budget, the hostile header and a small HEALPix map."""
    directory = tmp_path_factory.mktemp("bad-input")
    previous = os.environ.get("NIGHTSHIFT_INGEST_MEMORY_BYTES")
    os.environ["NIGHTSHIFT_INGEST_MEMORY_BYTES"] = str(MEMORY_BYTES)
    try:
        with LocalNight(directory / "night") as night:
            store = night.start_s3()
            failed = night.start_services([ingest_command()], timeout_s=120)
            assert not failed, failed
            healpix = directory / "map.fits"
            hp.write_map(str(healpix), np.random.default_rng(1).normal(size=12 * 64**2).astype(np.float32), coord="G",
                         dtype=np.float32)
            sources = {
                "good": store.put_file(store.key("raw", "good.fits"), _field(directory / "good.fits", 128)),
                "large": store.put_file(store.key("raw", "large.fits"), _field(directory / "large.fits", 1024)),
                "hostile": store.put_bytes(store.key("raw", "hostile.fits"), hostile_fits()),
                "healpix": store.put_file(store.key("raw", "map.fits"), healpix),
            }
            yield night, sources
    finally:
        if previous is None:
            os.environ.pop("NIGHTSHIFT_INGEST_MEMORY_BYTES", None)
        else:
            os.environ["NIGHTSHIFT_INGEST_MEMORY_BYTES"] = previous


def _fits_request(source: tile_pb2.ObjectRef, run_id: str, **tiling: object) -> ingest_service_pb2.IngestFitsRequest:
    return ingest_service_pb2.IngestFitsRequest(
        survey="glimpse", field="f", run_id=run_id,
        bands=[ingest_service_pb2.FitsBand(band=tile_pb2.Band(name="irac4"), source=source)],
        tiling=ingest_service_pb2.FlatTiling(**tiling))


def _healpix_request(source: tile_pb2.ObjectRef, run_id: str, **tiling: object) -> ingest_service_pb2.IngestHealpixRequest:
    return ingest_service_pb2.IngestHealpixRequest(
        survey="planck", field="sky", run_id=run_id,
        bands=[ingest_service_pb2.HealpixBand(band=tile_pb2.Band(name="hfi_353"), source=source)],
        tiling=ingest_service_pb2.HealpixTiling(validation_cells=[], test_cells=[], **tiling))


def _refusal(service: RunningService, request: object, timeout_s: float = 60) -> grpc.RpcError:
    with IngestClient(service.target, timeout_s=timeout_s) as client, pytest.raises(grpc.RpcError) as refused:
        client.ingest(request, on_progress=lambda _: None)  # type: ignore[arg-type]
    return refused.value


def _assert_serving(service: RunningService) -> None:
    assert service.process.poll() is None, f"the ingest service died: {service.log_tail()}"
    with TaskClient(service.target, timeout_s=10) as client:
        assert client.health() == health_pb2.HealthCheckResponse.SERVING


def test_a_small_fits_whose_header_claims_a_huge_image_is_invalid_argument(ingest) -> None:
    night, sources = ingest
    assert sources["hostile"].size_bytes == 5760
    refused = _refusal(night.services["ingest"], _fits_request(sources["hostile"], "hostile"))
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT, refused.details()
    assert "declares 1000000 x 1000000 = 1000000000000 pixels" in refused.details()
    assert "max_image_px" in refused.details()
    _assert_serving(night.services["ingest"])


@pytest.mark.parametrize("make_request, limit", [
    (lambda s: _fits_request(s["good"], "out", window_px=[64], output_px=50000), "max_window_px"),
    (lambda s: _fits_request(s["good"], "win", window_px=[60000]), "max_window_px"),
    # every size from 1 to 8 px at a 1 px step: about 125 000 windows over the 128 px field
    (lambda s: _fits_request(s["good"], "many", window_px=range(1, 9), overlap_fraction=0.9), "max_tiles"),
    (lambda s: _healpix_request(s["healpix"], "patch", patch_px=20000, pixel_scale_arcmin=0.01), "max_patch_px"),
    (lambda s: _healpix_request(s["healpix"], "scale", patch_px=64, pixel_scale_arcmin=1e-6), "min_pixel_scale_arcmin"),
    (lambda s: _healpix_request(s["healpix"], "count", patch_px=16, pixel_scale_arcmin=0.5), "max_tiles"),
], ids=["output_px", "window_px", "window-count", "patch_px", "pixel-scale", "patch-count"])
def test_a_tiling_beyond_the_limits_is_invalid_argument_naming_the_limit(
    ingest, make_request: Callable[[dict[str, tile_pb2.ObjectRef]], object], limit: str
) -> None:
    night, sources = ingest
    started = time.monotonic()
    refused = _refusal(night.services["ingest"], make_request(sources))
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT, refused.details()
    assert limit in refused.details() and "the service's limit is" in refused.details()
    assert time.monotonic() - started < 10  # refused up front, not after the work
    _assert_serving(night.services["ingest"])


def test_a_field_beyond_the_memory_budget_is_resource_exhausted_and_a_small_one_is_ingested(ingest) -> None:
    night, sources = ingest
    refused = _refusal(night.services["ingest"], _fits_request(sources["large"], "large", window_px=[128]))
    assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, refused.details()
    assert "memory_bytes" in refused.details() and "split the request" in refused.details()
    with IngestClient(night.services["ingest"].target, timeout_s=60) as client:
        summary = client.ingest(_fits_request(sources["good"], "good", window_px=[64]), on_progress=lambda _: None)
    assert summary.tile_count == 4  # 2 x 2 windows of 64 px over 128 px
    _assert_serving(night.services["ingest"])


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def test_an_ingest_past_its_deadline_stops_working_and_writes_no_index(ingest) -> None:
    night, sources = ingest
    service, store = night.services["ingest"], night.store
    # about 45 000 patches of 64 x 64 px: a minute or more of work on two cores
    request = _healpix_request(sources["healpix"], "late", patch_px=64, pixel_scale_arcmin=0.9)
    refused = _refusal(service, request, timeout_s=3)
    assert refused.code() == grpc.StatusCode.DEADLINE_EXCEEDED

    time.sleep(1.0)  # the work stops at its next patch batch (well under a second)
    before = _cpu_s(service.process.pid)
    time.sleep(2.0)
    assert _cpu_s(service.process.pid) - before < 0.5, "the ingest kept working after its deadline"
    assert not [key for key in store.list_keys("") if "/late/" in key], "an abandoned ingest wrote its index"
    _assert_serving(service)


@pytest.mark.usefixtures("prefect_harness")
def test_in_a_real_night_the_hostile_file_is_quarantined_and_the_rest_is_published(
    local_night: LocalNight, config_of: Callable[..., NightConfig]
) -> None:
    store, night = local_night.store, "2026-05-01"
    simulate_night(store, night, seed=6)
    raw = NightLayout(store, night).raw_prefix
    store.put_bytes(f"{raw}glimpse/l099/irac4.fits", hostile_fits())
    store.put_bytes(f"{raw}glimpse/l099/mips24.fits", store.get_bytes(f"{raw}glimpse/l030/mips24.fits"))

    summary = nightly(config=config_of(local_night), night=night)

    assert summary.complete and summary.run_id, summary
    reasons = dict(summary.quarantined)
    assert list(reasons) == ["glimpse/l099"], reasons
    assert "declares 1000000 x 1000000" in reasons["glimpse/l099"]
    assert {name for name, _ in summary.inputs} >= {"glimpse/l030", "glimpse/l032"}
    _assert_serving(local_night.services["ingest"])
