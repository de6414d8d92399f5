"""Calling the ingest service: one night input in, its tiles (pixels by store reference) out.

Each input is ingested under a run id of its own (``<night>.<input_key>``), so ``ListTiles`` of that
run lists exactly the tiles of that input. The files' SHA-256 travel in the request: the service
checks them, so the tiles come from exactly the bytes the night's checksums name.

Each call carries the least role it needs: the ``ingest`` token (``NIGHTSHIFT_AUTH_TOKEN_INGEST``) for
``IngestFits`` / ``IngestHealpix``, the ``infer`` token (``NIGHTSHIFT_AUTH_TOKEN_INFER``) for ``ListTiles``
(:func:`nightshift.core.auth.token_for`; both fall back to ``NIGHTSHIFT_AUTH_TOKEN``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from types import TracebackType

from nightshift.core.auth import AUTH_TOKEN_ENV, bearer_metadata, token_for
from nightshift.core.client import open_channel
from nightshift.orchestration.config import FitsTiling
from nightshift.orchestration.discovery import NightInput
from nightshift.v1 import ingest_service_pb2, ingest_service_pb2_grpc, tile_pb2

__all__ = ["IngestClient", "ingest_run_id", "ingest_request"]

_FRAMES = {"galactic": tile_pb2.SKY_FRAME_GALACTIC, "icrs": tile_pb2.SKY_FRAME_ICRS}
_LIST_PAGE_TILES = 2000

IngestRequest = ingest_service_pb2.IngestFitsRequest | ingest_service_pb2.IngestHealpixRequest
ProgressCallback = Callable[[ingest_service_pb2.IngestProgress], None]


def ingest_run_id(night: str, night_input: NightInput) -> str:
    """The ingest run of one input of one night."""
    return f"{night}.{night_input.input_key}"


def ingest_request(night: str, night_input: NightInput, bucket: str) -> IngestRequest:
    """The ``IngestFits`` or ``IngestHealpix`` request of one input, by the survey's tiling."""
    survey, tiling = night_input.survey, night_input.survey.tiling
    run_id = ingest_run_id(night, night_input)
    bands = [
        (tile_pb2.Band(name=b.name, wavelength_um=b.wavelength_um, unit=b.unit),
         tile_pb2.ObjectRef(bucket=bucket, key=f.key, size_bytes=f.size_bytes, sha256=f.sha256))
        for b, f in zip(survey.bands, night_input.files)
    ]
    if isinstance(tiling, FitsTiling):
        return ingest_service_pb2.IngestFitsRequest(
            survey=survey.name, field=night_input.field, run_id=run_id,
            bands=[ingest_service_pb2.FitsBand(band=band, source=source) for band, source in bands],
            tiling=ingest_service_pb2.FlatTiling(
                window_px=tiling.window_px, overlap_fraction=tiling.overlap_fraction, output_px=tiling.output_px
            ),
        )
    return ingest_service_pb2.IngestHealpixRequest(
        survey=survey.name, field=night_input.field, run_id=run_id,
        bands=[ingest_service_pb2.HealpixBand(band=band, source=source) for band, source in bands],
        tiling=ingest_service_pb2.HealpixTiling(
            patch_px=tiling.patch_px, pixel_scale_arcmin=tiling.pixel_scale_arcmin,
            overlap_fraction=tiling.overlap_fraction, validation_cells=tiling.validation_cells,
            test_cells=tiling.test_cells, frame=_FRAMES[tiling.frame],
        ),
    )


class IngestClient:
    """Call the ingest service at ``target``; every call has a deadline of ``timeout_s`` seconds.

    TLS when ``root_certificates`` (PEM) are given or ``NIGHTSHIFT_GRPC_TLS_CA`` names a file of them.
    ``ingest_token`` and ``list_token`` (default: :func:`~nightshift.core.auth.token_for` "ingest" and
    "infer") are the bearer tokens of the ingest writes and of ``ListTiles``.
    """

    def __init__(self, target: str, *, timeout_s: float, root_certificates: bytes | None = None,
                 ingest_token: str | None = None, list_token: str | None = None) -> None:
        self.target = target
        self.timeout_s = timeout_s
        # no channel-wide token: each call sends its own (NIGHTSHIFT_AUTH_TOKEN only through token_for)
        environ = {name: value for name, value in os.environ.items() if name != AUTH_TOKEN_ENV}
        self._channel = open_channel(target, root_certificates=root_certificates, environ=environ)
        self._ingest_metadata = bearer_metadata(ingest_token or token_for("ingest"))
        self._list_metadata = bearer_metadata(list_token or token_for("infer"))
        self._stub = ingest_service_pb2_grpc.IngestServiceStub(self._channel)

    def ingest(self, request: IngestRequest, on_progress: ProgressCallback) -> ingest_service_pb2.IngestSummary:
        """Run the ingest, passing each progress event to ``on_progress``; return the summary."""
        call = self._stub.IngestFits if isinstance(request, ingest_service_pb2.IngestFitsRequest) else self._stub.IngestHealpix
        summary = None
        for event in call(request, timeout=self.timeout_s, metadata=self._ingest_metadata):
            if event.HasField("progress"):
                on_progress(event.progress)
            else:
                summary = event.summary
        if summary is None:
            raise RuntimeError(f"ingest service at {self.target} ended the stream without a summary")
        return summary

    def list_tiles(self, run_id: str) -> list[tile_pb2.ImageTile]:
        """Every tile of ingest run ``run_id``, all pages."""
        tiles: list[tile_pb2.ImageTile] = []
        token = ""
        while True:
            page = self._stub.ListTiles(
                ingest_service_pb2.ListTilesRequest(run_id=run_id, page_size=_LIST_PAGE_TILES, page_token=token),
                timeout=self.timeout_s, metadata=self._list_metadata,
            )
            tiles.extend(page.tiles)
            token = page.next_page_token
            if not token:
                return tiles

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> IngestClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
