"""``IngestService`` over the ingest pipeline: translate the contract, run the work off the event loop.

Ingests run in worker threads, at most ``ServerOptions.compute_slots`` at once (each holds whole
images or maps in memory); their progress streams back as it happens. Each runs within the
:class:`~nightshift.ingest.config.IngestLimits` (from the environment, its memory budget the
container's memory shared among the compute slots) and stops when its call is cancelled or its
deadline passes. Errors are the project's typed errors, which the server runtime maps to status codes
(bad input: INVALID_ARGUMENT; beyond the memory budget: RESOURCE_EXHAUSTED).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

import grpc

from nightshift.core.metrics import ServiceMetrics
from nightshift.core.model import CallScope
from nightshift.core.server import ProgressStream, Servable, ServerOptions
from nightshift.core.store import ObjectStore
from nightshift.ingest.config import FitsIngest, HealpixIngest, IngestLimits
from nightshift.ingest.pipeline import ProgressCallback, ingest_fits, ingest_healpix
from nightshift.ingest.tile_index import list_tiles
from nightshift.v1 import ingest_service_pb2, ingest_service_pb2_grpc

__all__ = ["INGEST_SERVICE_NAME", "IngestServable"]

INGEST_SERVICE_NAME = ingest_service_pb2.DESCRIPTOR.services_by_name["IngestService"].full_name

_Response = TypeVar("_Response", ingest_service_pb2.IngestFitsResponse, ingest_service_pb2.IngestHealpixResponse)


class _IngestServicer(ingest_service_pb2_grpc.IngestServiceServicer):
    def __init__(self, store: ObjectStore, slots: int, limits: IngestLimits) -> None:
        self.store = store
        self.limits = limits
        self._slots = asyncio.Semaphore(slots)

    async def _stream(
        self,
        work: Callable[[ProgressCallback], ingest_service_pb2.IngestSummary],
        response: type[_Response],
        context: grpc.aio.ServicerContext,
        what: str,
    ) -> AsyncIterator[_Response]:
        """Run ``work`` in a thread, within the call's deadline; yield each progress event as it comes, then the summary."""
        async with self._slots:
            run = ProgressStream(work, scope=CallScope(context.time_remaining(), what=what))
            async for event in run:
                yield response(progress=event)
        yield response(summary=run.result)

    async def IngestFits(
        self, request: ingest_service_pb2.IngestFitsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[ingest_service_pb2.IngestFitsResponse]:
        ingest = FitsIngest.from_proto(request)
        async for event in self._stream(
            lambda progress: ingest_fits(self.store, ingest, limits=self.limits, progress=progress),
            ingest_service_pb2.IngestFitsResponse, context, "IngestFits",
        ):
            yield event

    async def IngestHealpix(
        self, request: ingest_service_pb2.IngestHealpixRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[ingest_service_pb2.IngestHealpixResponse]:
        ingest = HealpixIngest.from_proto(request)
        async for event in self._stream(
            lambda progress: ingest_healpix(self.store, ingest, limits=self.limits, progress=progress),
            ingest_service_pb2.IngestHealpixResponse, context, "IngestHealpix",
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
    limits : IngestLimits, optional
        What one request may ask for (default: :meth:`IngestLimits.from_env`); without a memory
        budget of its own, one request gets the server's memory budget over its compute slots.
    """

    name = "ingest"
    service_names = (INGEST_SERVICE_NAME,)

    def __init__(self, store: ObjectStore, limits: IngestLimits | None = None) -> None:
        self.store = store
        self.limits = limits

    def add_to_server(self, server: grpc.aio.Server, metrics: ServiceMetrics, options: ServerOptions) -> None:
        limits = self.limits or IngestLimits.from_env()
        if not limits.memory_bytes:
            limits = dataclasses.replace(limits, memory_bytes=max(1, options.memory_budget() // options.compute_slots))
        ingest_service_pb2_grpc.add_IngestServiceServicer_to_server(
            _IngestServicer(self.store, options.compute_slots, limits), server)

    def load(self) -> None:
        """Make sure the bucket exists (and the store answers) before health turns SERVING."""
        self.store.ensure_bucket()

    def describe_ready(self) -> dict[str, str]:
        return {"store": f"{self.store.config.endpoint}/{self.store.bucket}/{self.store.config.prefix}"}
