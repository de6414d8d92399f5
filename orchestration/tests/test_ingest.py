"""Ingest requests built from night inputs, by the survey's tiling."""

from __future__ import annotations

from nightshift.orchestration.discovery import NightInput, RawFile
from nightshift.orchestration.ingest import ingest_request, ingest_run_id
from nightshift.orchestration.simulate import SIMULATED_SURVEYS
from nightshift.v1 import ingest_service_pb2, tile_pb2


def _input(survey_index: int) -> NightInput:
    survey = SIMULATED_SURVEYS[survey_index]
    files = tuple(RawFile(key=f"raw/n/{survey.name}/f/{b.name}.fits", path="", sha256=f"{i}" * 64, size_bytes=10 + i)
                  for i, b in enumerate(survey.bands))
    return NightInput(survey=survey, field="f", files=files)


def test_fits_request_names_each_band_file_with_its_checksum() -> None:
    night_input = _input(0)
    request = ingest_request("2026-05-06", night_input, "bucket")
    assert isinstance(request, ingest_service_pb2.IngestFitsRequest)
    assert request.run_id == ingest_run_id("2026-05-06", night_input) == f"2026-05-06.{night_input.input_key}"
    assert [(b.band.name, b.source.key, b.source.sha256) for b in request.bands] == [
        ("irac4", "raw/n/glimpse/f/irac4.fits", "0" * 64), ("mips24", "raw/n/glimpse/f/mips24.fits", "1" * 64)]
    assert list(request.tiling.window_px) == [128] and request.tiling.overlap_fraction == 0.25


def test_healpix_request_carries_the_patching() -> None:
    request = ingest_request("2026-05-06", _input(1), "bucket")
    assert isinstance(request, ingest_service_pb2.IngestHealpixRequest)
    assert (request.tiling.patch_px, request.tiling.frame) == (48, tile_pb2.SKY_FRAME_GALACTIC)
    assert [b.band.unit for b in request.bands] == ["uK_CMB", "uK_CMB"]
