"""Sending tiles to a science service: which tiles it accepts, in batches, each call's results recorded once.

A service's ``Describe`` says what it accepts (bands in order, tile size, dtype, batch limits) and
which model version it serves. The night pins that version in every call, so the results of a
call are keyed by (task, model version, input, tile ids of the batch) and written to the store as
soon as the call returns: a re-run finds them and calls nothing, and a night interrupted half way
resumes at the first batch without a record.

The flow's tasks never carry tiles: :func:`plan_work` cuts an input's tile index into work items,
each a few consecutive call batches stored as a batch manifest (a ``TileIndex`` under
``work/batches/``), and a task is given the manifest's key. So a night of 100,000 tiles is a few
hundred task runs, each with a short string for an argument.
"""

from __future__ import annotations

import dataclasses
import socket
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from nightshift.core.auth import token_for
from nightshift.core.client import TaskClient
from nightshift.core.store import ObjectStore
from nightshift.orchestration.config import ServiceEndpoint
from nightshift.orchestration.layout import NightLayout
from nightshift.v1 import ingest_service_pb2, task_service_pb2, tile_pb2

__all__ = ["ServicePlan", "describe", "replica_count", "accepts", "chunks", "call_batches", "WorkItem", "plan_work", "work_batches",
           "InferOutcome", "infer_batches", "recorded_results"]

_T = TypeVar("_T")
_slots_lock = threading.Lock()
_slots: dict[str, threading.BoundedSemaphore] = {}
_clients: dict[str, TaskClient] = {}


def _call_slots(plan: ServicePlan) -> threading.BoundedSemaphore:
    """The process-wide limit of Infer calls in flight to ``plan``'s service (all tasks of the flow share it)."""
    with _slots_lock:
        key = f"{plan.endpoint.target}/{plan.max_in_flight}"
        return _slots.setdefault(key, threading.BoundedSemaphore(plan.max_in_flight))


def _shared_client(endpoint: ServiceEndpoint) -> TaskClient:
    """The process's client of ``endpoint``, shared by Describe and every task: one channel, whose connections
    to the replicas open at Describe and stay open between tasks (a new channel sends its first calls to
    whichever replica connects first, so a channel per task would skew the share of calls)."""
    with _slots_lock:
        key = f"{endpoint.target}/{endpoint.timeout_s}"
        if key not in _clients:
            _clients[key] = TaskClient(endpoint.target, timeout_s=endpoint.timeout_s, token=token_for("infer"))
        return _clients[key]


def replica_count(target: str) -> int:
    """How many addresses a gRPC ``target`` resolves to now: the replicas a round-robin channel spreads calls over.

    ``ipv4:a:p,b:q`` (and ``ipv6:``) lists them; ``dns:///name:port`` and ``name:port`` are resolved as
    gRPC's DNS resolver does (a headless Service's name gives one address per ready pod). A name that
    does not resolve counts as one replica: the calls then fail with the channel's own UNAVAILABLE.
    """
    scheme, _, rest = target.partition(":")
    if scheme in ("ipv4", "ipv6"):
        return max(1, len([a for a in rest.split(",") if a]))
    if scheme in ("unix", "unix-abstract"):
        return 1
    host_port = target.split("/")[-1] if target.startswith("dns:") else target
    host, _, port = host_port.rpartition(":")
    try:
        addresses = socket.getaddrinfo(host.strip("[]") or host_port, port or None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return 1
    return max(1, len({info[4][:2] for info in addresses}))


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
    replicas : int
        Addresses the endpoint's target resolved to at Describe (see :func:`replica_count`).
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
    replicas: int = 1

    @property
    def max_in_flight(self) -> int:
        """Infer calls in flight to the service at once: ``max_concurrent_calls`` per replica."""
        return self.endpoint.max_concurrent_calls * self.replicas

    def describe_input(self) -> str:
        """What the service accepts, in words (for the report)."""
        size = f"{self.height or 'any'}x{self.width or 'any'}"
        return f"bands {list(self.bands)}, {size} px, {tile_pb2.DataType.Name(self.dtype)}"


def describe(endpoint: ServiceEndpoint) -> ServicePlan:
    """Ask ``endpoint`` what it does and accepts (a deadline of ``endpoint.timeout_s``)."""
    response = _shared_client(endpoint).describe()
    spec = response.input
    preferred = endpoint.batch_tiles or spec.preferred_batch_tiles or spec.max_batch_tiles
    return ServicePlan(
        endpoint=endpoint, task=response.task, model_name=response.serving_model.name,
        model_version=response.serving_model.version, output_kind=response.output_kind,
        bands=tuple(spec.bands), height=spec.height, width=spec.width, dtype=spec.dtype,
        batch_tiles=max(1, min(preferred, spec.max_batch_tiles or preferred)), replicas=replica_count(endpoint.target),
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


def _group_batches(batches: list[list[tile_pb2.ImageTile]], tiles_per_item: int) -> list[list[list[tile_pb2.ImageTile]]]:
    """Consecutive call batches grouped into work items of about ``tiles_per_item`` tiles (at least one call each)."""
    groups: list[list[list[tile_pb2.ImageTile]]] = [[]]
    for batch in batches:
        if groups[-1] and sum(map(len, groups[-1])) + len(batch) > tiles_per_item:
            groups.append([])
        groups[-1].append(batch)
    return [g for g in groups if g]


@dataclasses.dataclass(frozen=True)
class WorkItem:
    """One task's share of a service's work on one input: the key of its batch manifest, its tiles and Infer calls."""

    key: str
    tiles: int
    calls: int


def plan_work(store: ObjectStore, layout: NightLayout, plan: ServicePlan, input_key: str,
              tiles: Sequence[tile_pb2.ImageTile], tiles_per_item: int) -> list[WorkItem]:
    """Cut the :func:`call_batches` of one input's ``tiles`` into work items of about ``tiles_per_item`` tiles.

    Each item's tiles are stored as a ``TileIndex`` at :meth:`NightLayout.batch_manifest` (keyed by its
    tiles, so written once whichever night plans it); :func:`work_batches` gives its call batches back.
    """
    items = []
    for group in _group_batches(call_batches(plan, tiles), tiles_per_item):
        item_tiles = [t for batch in group for t in batch]
        key = layout.batch_manifest(plan.task, plan.model_name, plan.model_version, input_key, (t.tile_id for t in item_tiles))
        if not store.exists(key):
            store.put_bytes(key, ingest_service_pb2.TileIndex(tiles=item_tiles).SerializeToString(deterministic=True),
                            content_type="application/x-protobuf")
        items.append(WorkItem(key=key, tiles=len(item_tiles), calls=len(group)))
    return items


def work_batches(store: ObjectStore, plan: ServicePlan, item_key: str) -> list[list[tile_pb2.ImageTile]]:
    """The call batches of the work item stored at ``item_key`` (as :func:`plan_work` cut them)."""
    # Every batch but an input's last is full, and that one ends its item: re-chunking gives the same batches.
    return chunks(ingest_service_pb2.TileIndex.FromString(store.get_bytes(item_key)).tiles, plan.batch_tiles)


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

    Up to :attr:`ServicePlan.max_in_flight` calls go at once (the round-robin channel spreads them over
    the replicas; all tasks of the process share that limit). Each call's ``InferResponse`` is written
    at :meth:`NightLayout.infer_record` as soon as it returns.

    Raises
    ------
    grpc.RpcError
        A call failed (the deadline is ``plan.endpoint.timeout_s``); batches recorded before it stay recorded.
    """
    slots = _call_slots(plan)

    def run(client: TaskClient, batch: Sequence[tile_pb2.ImageTile]) -> bool:
        """Whether a call was made (False: its results were recorded before)."""
        key = layout.infer_record(plan.task, plan.model_name, plan.model_version, input_key, (t.tile_id for t in batch))
        if store.exists(key):
            return False
        with slots:
            response = client.infer(batch, model_version=plan.model_version)
        store.put_bytes(key, response.SerializeToString(deterministic=True), content_type="application/x-protobuf")
        return True

    client = _shared_client(plan.endpoint)
    with ThreadPoolExecutor(max_workers=max(1, min(len(batches), plan.max_in_flight))) as pool:
        called = list(pool.map(lambda batch: run(client, batch), batches))
    calls = sum(called)
    inferred = sum(len(b) for b, made in zip(batches, called) if made)
    return InferOutcome(calls=calls, tiles_inferred=inferred, tiles_recorded_before=sum(map(len, batches)) - inferred)


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
