"""Sending tiles to a science service: which tiles it accepts, in batches, each call's results recorded once.

A service's ``Describe`` says what it accepts (bands in order, tile size, dtype, batch limits) and
which model version it serves. The night pins that version in every call, so the results of a
call are keyed by (task, model version, input, tile ids of the batch) and written to the store as
soon as the call returns: a re-run finds them and calls nothing, and a night interrupted half way
resumes at the first batch without a record.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from typing import TypeVar

from nightshift.core.auth import token_for
from nightshift.core.client import TaskClient
from nightshift.core.store import ObjectStore
from nightshift.orchestration.config import ServiceEndpoint
from nightshift.orchestration.layout import NightLayout
from nightshift.v1 import task_service_pb2, tile_pb2

__all__ = ["ServicePlan", "describe", "accepts", "chunks", "call_batches", "InferOutcome", "infer_batches", "recorded_results"]

_T = TypeVar("_T")
_slots_lock = threading.Lock()
_slots: dict[str, threading.BoundedSemaphore] = {}


def _call_slots(endpoint: ServiceEndpoint) -> threading.BoundedSemaphore:
    """The process-wide limit of Infer calls in flight to ``endpoint`` (all tasks of the flow share it)."""
    with _slots_lock:
        key = f"{endpoint.target}/{endpoint.max_concurrent_calls}"
        return _slots.setdefault(key, threading.BoundedSemaphore(endpoint.max_concurrent_calls))


@dataclasses.dataclass(frozen=True)
class ServicePlan:
    """A service as the night uses it: its endpoint, task, pinned model and accepted tiles.

    Attributes
    ----------
    endpoint : ServiceEndpoint
        Where it is and how it is called.
    task : str
        Task name from Describe, e.g. "bubbles".
    model_name, model_version : str
        The model version Describe said it serves; every call names it.
    output_kind : int
        ``task_service_pb2.OutputKind`` value.
    bands : tuple of str
        Bands accepted, in order.
    height, width : int
        Tile size accepted in pixels (0: any).
    dtype : int
        ``tile_pb2.DataType`` accepted.
    batch_tiles : int
        Tiles per Infer call.
    """

    endpoint: ServiceEndpoint
    task: str
    model_name: str
    model_version: str
    output_kind: int
    bands: tuple[str, ...]
    height: int
    width: int
    dtype: int
    batch_tiles: int

    def describe_input(self) -> str:
        """What the service accepts, in words (for the report)."""
        size = f"{self.height or 'any'}x{self.width or 'any'}"
        return f"bands {list(self.bands)}, {size} px, {tile_pb2.DataType.Name(self.dtype)}"


def describe(endpoint: ServiceEndpoint) -> ServicePlan:
    """Ask ``endpoint`` what it does and accepts (a deadline of ``endpoint.timeout_s``)."""
    with TaskClient(endpoint.target, timeout_s=endpoint.timeout_s, token=token_for("infer")) as client:
        response = client.describe()
    spec = response.input
    preferred = endpoint.batch_tiles or spec.preferred_batch_tiles or spec.max_batch_tiles
    return ServicePlan(
        endpoint=endpoint, task=response.task, model_name=response.serving_model.name,
        model_version=response.serving_model.version, output_kind=response.output_kind,
        bands=tuple(spec.bands), height=spec.height, width=spec.width, dtype=spec.dtype,
        batch_tiles=max(1, min(preferred, spec.max_batch_tiles or preferred)),
    )


def accepts(plan: ServicePlan, tile: tile_pb2.ImageTile) -> bool:
    """Whether ``tile`` has the bands (in order), size and dtype ``plan``'s service accepts."""
    _, height, width = (tuple(tile.pixels.shape) + (0, 0, 0))[:3]
    return (
        tuple(b.name for b in tile.bands) == plan.bands
        and tile.pixels.dtype == plan.dtype
        and plan.height in (0, height)
        and plan.width in (0, width)
    )


def chunks(items: Sequence[_T], size: int) -> list[list[_T]]:
    """``items`` in consecutive lists of at most ``size``."""
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


def call_batches(plan: ServicePlan, tiles: Sequence[tile_pb2.ImageTile]) -> list[list[tile_pb2.ImageTile]]:
    """The Infer calls for one input: the tiles ``plan`` accepts, by tile id, ``plan.batch_tiles`` per call.

    The order is fixed so that the same tiles always make the same batches (and the same record keys).
    """
    accepted = sorted((t for t in tiles if accepts(plan, t)), key=lambda t: t.tile_id)
    return chunks(accepted, plan.batch_tiles)


@dataclasses.dataclass(frozen=True)
class InferOutcome:
    """What one batch of tiles cost: Infer calls made, tiles inferred, tiles whose results were already recorded."""

    calls: int
    tiles_inferred: int
    tiles_recorded_before: int


def infer_batches(
    store: ObjectStore, layout: NightLayout, plan: ServicePlan, input_key: str, batches: Sequence[Sequence[tile_pb2.ImageTile]]
) -> InferOutcome:
    """Run ``plan``'s service on ``batches`` of one input's tiles, one call each, skipping recorded calls.

    Each call's ``InferResponse`` is written at :meth:`NightLayout.infer_record` as soon as it returns.

    Raises
    ------
    grpc.RpcError
        A call failed (the deadline is ``plan.endpoint.timeout_s``); batches recorded before it stay recorded.
    """
    calls = inferred = recorded = 0
    with TaskClient(plan.endpoint.target, timeout_s=plan.endpoint.timeout_s, token=token_for("infer")) as client:
        for batch in batches:
            key = layout.infer_record(plan.task, plan.model_name, plan.model_version, input_key, (t.tile_id for t in batch))
            if store.exists(key):
                recorded += len(batch)
                continue
            with _call_slots(plan.endpoint):
                response = client.infer(batch, model_version=plan.model_version)
            store.put_bytes(key, response.SerializeToString(deterministic=True), content_type="application/x-protobuf")
            calls += 1
            inferred += len(batch)
    return InferOutcome(calls=calls, tiles_inferred=inferred, tiles_recorded_before=recorded)


def recorded_results(
    store: ObjectStore, layout: NightLayout, plan: ServicePlan, input_key: str, batches: Sequence[Sequence[tile_pb2.ImageTile]]
) -> list[task_service_pb2.InferResponse]:
    """The recorded responses of ``batches`` of one input, in order (every batch must be recorded)."""
    return [
        task_service_pb2.InferResponse.FromString(store.get_bytes(
            layout.infer_record(plan.task, plan.model_name, plan.model_version, input_key, (t.tile_id for t in batch))
        ))
        for batch in batches
    ]
