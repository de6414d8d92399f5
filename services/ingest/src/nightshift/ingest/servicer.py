"""``IngestService`` over the ingest pipeline: translate the contract, run the work off the event loop.

Ingests run in worker threads, at most ``ServerOptions.compute_slots`` at once (each holds whole
images or maps in memory); their progress streams back as it happens. Errors are the project's
typed errors, which the server runtime maps to status codes (bad input: INVALID_ARGUMENT).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

import grpc

from nightshift.core.metrics import ServiceMetrics
from nightshift.core.server import ProgressStream, Servable, ServerOptions
from nightshift.core.store import ObjectStore
from nightshift.ingest.config import FitsIngest, HealpixIngest
from nightshift.ingest.pipeline import ProgressCallback, ingest_fits, ingest_healpix
from nightshift.ingest.tile_index import list_tiles
from nightshift.v1 import ingest_service_pb2, ingest_service_pb2_grpc

__all__ = ["INGEST_SERVICE_NAME", "IngestServable"]

INGEST_SERVICE_NAME = ingest_service_pb2.DESCRIPTOR.services_by_name["IngestService"].full_name

_Response = TypeVar("_Response", ingest_service_pb2.IngestFitsResponse, ingest_service_pb2.IngestHealpixResponse)


class _IngestServicer(ingest_service_pb2_grpc.IngestServiceServicer):
    def __init__(self, store: ObjectStore, slots: int) -> None:
        self.store = store
        self._slots = asyncio.Semaphore(slots)

    async def _stream(
        self,
        work: Callable[[ProgressCallback], ingest_service_pb2.IngestSummary],
        response: type[_Response],
    ) -> AsyncIterator[_Response]:
        """Run ``work`` in a thread; yield each progress event as it comes, then the summary."""
        async with self._slots:
            run = ProgressStream(work)
            async for event in run:
                yield response(progress=event)
        yield response(summary=run.result)

    async def IngestFits(
        self, request: ingest_service_pb2.IngestFitsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[ingest_service_pb2.IngestFitsResponse]:
        ingest = FitsIngest.from_proto(request)
        async for event in self._stream(
            lambda progress: ingest_fits(self.store, ingest, progress=progress), ingest_service_pb2.IngestFitsResponse
        ):
            yield event

    async def IngestHealpix(
        self, request: ingest_service_pb2.IngestHealpixRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[ingest_service_pb2.IngestHealpixResponse]:
        ingest = HealpixIngest.from_proto(request)
        async for event in self._stream(
            lambda progress: ingest_healpix(self.store, ingest, progress=progress), ingest_service_pb2.IngestHealpixResponse
        ):
            yield event

    async def ListTiles(
        self, request: ingest_service_pb2.ListTilesRequest, context: grpc.aio.ServicerContext
    ) -> ingest_service_pb2.ListTilesResponse:
        return await asyncio.to_thread(
            list_tiles, self.store, request.run_id, survey=request.survey, split=request.split,
            page_size=request.page_size, page_token=request.page_token,
        )


class IngestServable(Servable):
    """The ingest service for the server runtime: ``IngestService`` on one object store.

    Parameters
    ----------
    store : ObjectStore
        Where sources are read from (``raw/``) and tiles, shards and indexes are written.
    """

    name = "ingest"
    service_names = (INGEST_SERVICE_NAME,)

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def add_to_server(self, server: grpc.aio.Server, metrics: ServiceMetrics, options: ServerOptions) -> None:
        ingest_service_pb2_grpc.add_IngestServiceServicer_to_server(_IngestServicer(self.store, options.compute_slots), server)

    def load(self) -> None:
        """Make sure the bucket exists (and the store answers) before health turns SERVING."""
        self.store.ensure_bucket()

    def describe_ready(self) -> dict[str, str]:
        return {"store": f"{self.store.config.endpoint}/{self.store.bucket}/{self.store.config.prefix}"}
