"""Service-versus-bare-model throughput, measured in one run: every service's ``bench`` uses it.

The bare path calls :meth:`TaskModel.infer` on tiles already decoded in memory. The service path
sends the same batches through ``Infer`` over gRPC on 127.0.0.1 with the pixels passed by
object-store reference into shards of 4 MiB, as the ingest writes them (so a batch is read one GET
per shard run), so it pays for the wire, the store reads, decoding and validation. Both
use the same loaded model object, so the ratio isolates what the service adds.
"""

from __future__ import annotations

import json
import platform
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nightshift.core.client import TaskClient
from nightshift.core.model import TaskModel
from nightshift.core.server import BackgroundServer, ServerOptions
from nightshift.core.store import ObjectStore, sha256_hex
from nightshift.core.tiles import Tile, decode_tiles
from nightshift.v1 import tile_pb2

__all__ = ["benchmark_service", "report"]

_SHARD_BYTES = 4 * 1024 * 1024  # the ingest service's default shard size


def _batches(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _packed_in_shards(tiles: Sequence[Tile], store: ObjectStore, task: str) -> list[tile_pb2.ImageTile]:
    """The tiles' messages with their pixels by reference into shards of about 4 MiB, in tile order, as the ingest packs them."""
    packed: list[tile_pb2.ImageTile] = []
    pending: list[tuple[Tile, bytes]] = []

    def flush() -> None:
        key = store.put_bytes(store.key("bench", "shards", f"{task}-{len(packed):06d}"), b"".join(b for _, b in pending)).key
        offset = 0
        for tile, blob in pending:
            message = tile_pb2.ImageTile()
            message.CopyFrom(tile.message)
            message.pixels.object_ref.CopyFrom(tile_pb2.ObjectRef(bucket=store.bucket, key=key, offset=offset,
                                                                  size_bytes=len(blob), sha256=sha256_hex(blob)))
            packed.append(message)
            offset += len(blob)
        pending.clear()

    for tile in tiles:
        pending.append((tile, np.ascontiguousarray(tile.pixels, dtype=tile.pixels.dtype.newbyteorder("<")).tobytes()))
        if sum(len(b) for _, b in pending) >= _SHARD_BYTES:
            flush()
    if pending:
        flush()
    return packed


def _time_batches(run: Callable[[Sequence[Any]], object], batches: list[Sequence[Any]]) -> list[float]:
    latencies = []
    for batch in batches:
        started = time.perf_counter()
        run(batch)
        latencies.append(time.perf_counter() - started)
    return latencies


def benchmark_service(
    model: TaskModel,
    tiles: Sequence[tile_pb2.ImageTile],
    *,
    store: ObjectStore,
    batch_size: int,
    rounds: int = 3,
    device: str = "cpu",
) -> dict[str, Any]:
    """Measure ``Infer`` through a real server against the bare model on the same batches.

    Parameters
    ----------
    model : TaskModel
        The service's model adapter (loaded by the server it is served from).
    tiles : sequence of ImageTile
        The tiles, pixels inline or by reference; the service path sends them packed into shards in ``store``.
    store : ObjectStore
        The store holding the tiles' pixels.
    batch_size : int
        Tiles per call.
    rounds : int
        Passes over all batches on each path; the best pass is reported (the least disturbed).
    device : str
        Device the model runs on, for the report (name the GPU model on a GPU).

    Returns
    -------
    dict
        ``tiles_per_s`` (service), ``bare_tiles_per_s``, ``overhead_ratio`` (service over bare),
        ``latency_p50_ms`` / ``latency_p99_ms`` (service, per batch), ``peak_rss_mb`` and the setup.
    """
    options = ServerOptions(port=0, max_message_bytes=256 * 1024 * 1024)
    with BackgroundServer(model, store=store, options=options) as server, TaskClient(server.target, timeout_s=600) as client:
        decoded = decode_tiles(tiles, spec=model.spec, store=store)
        serving = model.serving_model()
        bare_batches, service_batches = _batches(decoded, batch_size), _batches(_packed_in_shards(decoded, store, model.task), batch_size)
        client.infer(service_batches[0])  # one untimed call: connection set-up
        bare_passes, service_passes = [], []
        for _ in range(rounds):  # interleaved, so drifts in machine load hit both paths alike
            bare_passes.append(_time_batches(lambda b: model.infer(b, serving), bare_batches))
            service_passes.append(_time_batches(client.infer, service_batches))
    bare = min(bare_passes, key=sum)
    service = min(service_passes, key=sum)
    return {
        "task": model.task,
        "model": f"{serving.name}:{serving.version}",
        "device": device,
        "host": platform.node(),
        "tiles": len(tiles),
        "batch_size": batch_size,
        "rounds": rounds,
        "tiles_per_s": len(tiles) / sum(service),
        "bare_tiles_per_s": len(tiles) / sum(bare),
        "overhead_ratio": sum(bare) / sum(service),
        "latency_p50_ms": 1e3 * statistics.median(service),
        "latency_p99_ms": 1e3 * float(np.percentile(service, 99)),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def report(figures: dict[str, Any], path: str | Path | None = None) -> None:
    """Write ``figures`` as JSON to ``path`` (if given) and print them as the last line, one JSON object."""
    line = json.dumps(figures, sort_keys=True, default=float)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(figures, indent=2, sort_keys=True, default=float) + "\n")
    print(line, flush=True)
