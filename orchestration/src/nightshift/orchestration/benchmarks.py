"""``nightshift bench``: every service's benchmark and the system benchmarks, in one run, in one table.

Each figure is measured against a baseline taken in the same run (a raw loopback socket copy, local
disk, the bare model, a per-patch ``gnomview`` loop), so the ratios hold on a noisy shared machine.
Sections (``--sections``):

- ``services``: each science service's own ``nightshift-<task> bench`` (a subprocess each: the
  TensorFlow and PyTorch services never share a process), service ``Infer`` vs the bare model;
- ``ingest``: ``nightshift-ingest bench`` at nside 512, 1024 and 2048 (patches/s vs ``gnomview``);
- ``transport``: ``Infer`` of a pass-through model with tiles inline, by object-store reference and in
  shared memory, 64x64x7 to 800x800x3 float32, MB/s against a raw loopback socket copy of the same bytes;
- ``batching``: many small concurrent requests with and without server-side batching;
- ``store``: shard put/get through S3 against local disk write/read of the same bytes;
- ``night``: the nightly flow on 1x, 4x and 16x the cheap simulated night (ingest + tile statistics),
  then 1x through the persistent Prefect server on PostgreSQL with process workers (``PrefectTier``);
- ``scale``: a Rubin-sized night of 102,400 small tiles (16 fields cut into 8x8 px windows): the flow's
  task runs (bounded: one per work item, not per tile), Prefect's overhead and the embedded Prefect
  server's memory through the night;
- ``replicas``: the share of Infer calls per replica of one target with 2 and 4 replicas, and the night's
  wall time with 1 and 2 replicas of an I/O-bound service (a call waits, as on a remote store).

The servers of the system benchmarks run as processes of their own (``python -m
nightshift.orchestration.benchmarks serve MODEL``), as in production, so client and server do not
share an interpreter. Writes ``latest.json`` and ``latest.md`` (the table the README includes).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import hashlib
import json
import os
import platform
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nightshift.core.children import end_with_parent, stop_child
from nightshift.core.model import TaskModel
from nightshift.core.tiles import Tile, TileSpec, make_tile
from nightshift.orchestration.launcher import console_script, run_json_command
from nightshift.v1 import results_pb2, task_service_pb2, tile_pb2

__all__ = ["README_BEGIN", "README_END", "SECTIONS", "add_arguments", "main", "update_readme"]

SECTIONS = ("services", "ingest", "transport", "batching", "store", "night", "scale", "replicas")
README_BEGIN, README_END = "<!-- bench:begin -->", "<!-- bench:end -->"
_MB = 1e6
_MESSAGE_LIMIT = 256 * 1024 * 1024
_SERVICE_TIMEOUT_S = 900
_SERVER_WORKERS = 2


@dataclasses.dataclass(frozen=True)
class Scale:
    """How much work each section does: the full CPU run or the quick smoke run."""

    tile_shapes: tuple[tuple[int, int, int], ...]
    transport_bytes: int
    rounds: int
    batching_requests: int
    clients: tuple[int, ...]
    shard_count: int
    night_scales: tuple[int, ...]
    ingest_nsides: tuple[int, ...]
    scale_fields: int = 16
    scale_field_px: int = 640
    replica_calls: int = 400
    replica_night_copies: int = 4


FULL = Scale(tile_shapes=((7, 64, 64), (3, 256, 256), (3, 400, 400), (3, 800, 800)), transport_bytes=96_000_000, rounds=3,
             batching_requests=384, clients=(1, 4, 16), shard_count=16, night_scales=(1, 4, 16), ingest_nsides=(512, 1024, 2048))
QUICK = Scale(tile_shapes=((7, 64, 64), (3, 256, 256)), transport_bytes=4_000_000, rounds=1,
              batching_requests=32, clients=(1, 4), shard_count=2, night_scales=(1,), ingest_nsides=(64,),
              scale_fields=2, scale_field_px=64, replica_calls=40, replica_night_copies=1)


# -- the models the system benchmarks serve ------------------------------------------------------


class PassThroughModel(TaskModel):
    """Answers each tile with its pixel count: the data path without a model."""

    task = "passthrough"
    summary = "Reports each tile's pixel count (benchmarks the data path)"
    output_kind = task_service_pb2.OUTPUT_KIND_MEASUREMENTS

    def __init__(self, bands: int) -> None:
        self.spec = TileSpec(bands=_band_names(bands), max_batch_tiles=4096)
        self._ref = results_pb2.ModelRef(name="passthrough", version="1")

    def load(self) -> None:
        """Nothing to load."""

    def serving_model(self) -> results_pb2.ModelRef:
        return self._ref

    def infer(self, tiles: Sequence[Tile], model: results_pb2.ModelRef) -> list[results_pb2.TileResult]:
        return [results_pb2.TileResult(tile_id=t.tile_id, measurements=[results_pb2.Measurement(
            tile_id=t.tile_id, model=model, quantity="pixels", value=float(t.pixels.size))]) for t in tiles]


class DenseLayerModel(TaskModel):
    """One dense layer over a 7x64x64 tile (29 MB of weights): like a network, its cost per call is
    mostly reading the weights, so a batch of tiles costs little more than one tile."""

    task = "dense"
    summary = "A 28672 x 256 dense layer per tile (benchmarks server-side batching)"
    output_kind = task_service_pb2.OUTPUT_KIND_MEASUREMENTS
    shape = (7, 64, 64)

    def __init__(self) -> None:
        self.spec = TileSpec(bands=_band_names(self.shape[0]), height=self.shape[1], width=self.shape[2],
                             preferred_batch_tiles=32, max_batch_tiles=64)
        self._ref = results_pb2.ModelRef(name="dense", version="1")
        self._weights = np.zeros((0, 0), np.float32)

    def load(self) -> None:
        rng = np.random.default_rng(0)
        self._weights = rng.standard_normal((int(np.prod(self.shape)), 256), dtype=np.float32)

    def serving_model(self) -> results_pb2.ModelRef:
        return self._ref

    def infer(self, tiles: Sequence[Tile], model: results_pb2.ModelRef) -> list[results_pb2.TileResult]:
        features = np.stack([t.pixels.reshape(-1) for t in tiles]) @ self._weights
        return [results_pb2.TileResult(tile_id=t.tile_id, measurements=[results_pb2.Measurement(
            tile_id=t.tile_id, model=model, quantity="feature_norm", value=float(np.linalg.norm(f)))])
            for t, f in zip(tiles, features)]


class IoBoundModel(TaskModel):
    """Waits ``delay_ms`` per call, as a service waiting on a remote store or another service does, then reports
    each tile's pixel count: its calls cost wall time, not CPU, so replicas can share them on a small machine."""

    task = "iobound"
    summary = "Waits a fixed time per call, then reports each tile's pixel count (benchmarks replicas)"
    output_kind = task_service_pb2.OUTPUT_KIND_MEASUREMENTS

    def __init__(self, bands: tuple[str, ...], delay_ms: float) -> None:
        self.spec = TileSpec(bands=bands, max_batch_tiles=64)
        self._ref = results_pb2.ModelRef(name="iobound", version="1")
        self._delay_s = delay_ms / 1e3

    def load(self) -> None:
        """Nothing to load."""

    def serving_model(self) -> results_pb2.ModelRef:
        return self._ref

    def infer(self, tiles: Sequence[Tile], model: results_pb2.ModelRef) -> list[results_pb2.TileResult]:
        time.sleep(self._delay_s)
        return [results_pb2.TileResult(tile_id=t.tile_id, measurements=[results_pb2.Measurement(
            tile_id=t.tile_id, model=model, quantity="pixels", value=float(t.pixels.size))]) for t in tiles]


def _band_names(count: int) -> tuple[str, ...]:
    return tuple(f"band{i}" for i in range(count))


@contextlib.contextmanager
def _served(model: str, work_dir: Path, env: dict[str, str], *args: str) -> Iterator[str]:
    """Run ``python -m nightshift.orchestration.benchmarks serve MODEL ARGS`` until the block ends; yield its target."""
    from nightshift.core.client import TaskClient

    port_file = work_dir / f"{model}-{time.monotonic_ns()}.port"
    log = (work_dir / f"{model}.log").open("ab")
    process = subprocess.Popen(
        end_with_parent([sys.executable, "-m", "nightshift.orchestration.benchmarks", "serve", model, *args]),
        env={**os.environ, **env, "NIGHTSHIFT_GRPC_PORT": "0", "NIGHTSHIFT_GRPC_PORT_FILE": str(port_file),
             "NIGHTSHIFT_GRPC_MAX_MESSAGE_BYTES": str(_MESSAGE_LIMIT), "NIGHTSHIFT_GRPC_GRACE_S": "2"},
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text()):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the {model} benchmark server did not start; see {log.name}")
            time.sleep(0.05)
        target = f"127.0.0.1:{port_file.read_text()}"
        with TaskClient(target) as client:
            client.wait_until_serving(timeout_s=60)
        yield target
    finally:
        stop_child(process)
        log.close()


def _serve(model: str, bands: int, band_names: Sequence[str] = (), delay_ms: float = 0.0) -> None:
    from nightshift.core.server import serve_from_environment

    models: dict[str, Callable[[], TaskModel]] = {"passthrough": lambda: PassThroughModel(bands), "dense": DenseLayerModel,
                                                  "iobound": lambda: IoBoundModel(tuple(band_names), delay_ms)}
    serve_from_environment(lambda store: models[model](), service=model)


# -- transport ----------------------------------------------------------------------------------


def _loopback_copy_s(payload: bytes, repeats: int) -> float:
    """Seconds to send ``payload`` ``repeats`` times through a TCP socket on 127.0.0.1 into one reused buffer."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def send() -> None:
            with socket.create_connection(("127.0.0.1", port)) as sender:
                for _ in range(repeats):
                    sender.sendall(payload)

        sender = threading.Thread(target=send)
        started = time.perf_counter()
        sender.start()
        connection, _ = listener.accept()
        with connection:
            buffer = memoryview(bytearray(len(payload)))
            expected, received = len(payload) * repeats, 0
            while received < expected:
                received += connection.recv_into(buffer[: min(len(buffer), expected - received)])
        elapsed = time.perf_counter() - started
        sender.join()
    return elapsed


def _tile_batches(shape: tuple[int, int, int], total_bytes: int, store: Any, shared_memory: Any = None) -> list[list[tile_pb2.ImageTile]]:
    """Calls of about 8 MB each (at least one tile) adding up to about ``total_bytes`` of distinct float32 tiles
    (pixels by reference into ``store``, in the ``shared_memory`` region, or else inline)."""
    tile_bytes = int(np.prod(shape)) * 4
    per_call = max(1, 8_000_000 // tile_bytes)
    count = max(per_call, round(total_bytes / tile_bytes / per_call) * per_call)
    rng = np.random.default_rng(sum(shape))
    bands = _band_names(shape[0])
    tiles = [make_tile(rng.standard_normal(shape, dtype=np.float32), bands=bands, survey="bench", field=f"t{i}",
                       store=store, inline_limit_bytes=0 if store is not None else _MESSAGE_LIMIT, shared_memory=shared_memory)
             for i in range(count)]
    return [tiles[i : i + per_call] for i in range(0, count, per_call)]


def _best_pass_s(call: Callable[[list[tile_pb2.ImageTile]], object], batches: list[list[tile_pb2.ImageTile]], rounds: int) -> float:
    call(batches[0])  # untimed: connection set-up
    passes = []
    for _ in range(rounds):
        started = time.perf_counter()
        for batch in batches:
            call(batch)
        passes.append(time.perf_counter() - started)
    return min(passes)


def bench_transport(scale: Scale, work_dir: Path, store: Any) -> dict[str, Any]:
    """Infer MB/s inline, by reference and in shared memory (where this host has it) per tile size, and the raw
    loopback copy of the same bytes."""
    from nightshift.core.client import TaskClient
    from nightshift.core.shm import SharedMemoryRegion, shared_memory_domain

    rows = []
    for shape in scale.tile_shapes:
        tile_bytes = int(np.prod(shape)) * 4
        inline, referenced = _tile_batches(shape, scale.transport_bytes, None), _tile_batches(shape, scale.transport_bytes, store)
        total = sum(len(b) for b in inline) * tile_bytes
        call_bytes = len(inline[0]) * tile_bytes
        raw_s = min(_loopback_copy_s(bytes(call_bytes), len(inline)) for _ in range(scale.rounds))
        # the floor of the checked carriers (reference, shared memory): the receiver's SHA-256 of the same bytes
        payload = bytes(call_bytes)
        sha256_s = _best_s(lambda: [hashlib.sha256(payload).digest() for _ in inline], scale.rounds)
        with _served("passthrough", work_dir, store.config.to_env(), "--bands", str(shape[0])) as target, \
                TaskClient(target, timeout_s=600, max_message_bytes=_MESSAGE_LIMIT) as client:
            inline_s = _best_pass_s(client.infer, inline, scale.rounds)
            referenced_s = _best_pass_s(client.infer, referenced, scale.rounds)
            shared: dict[str, float] = {}
            if shared_memory_domain() and client.describe().shared_memory_domain == shared_memory_domain():
                with SharedMemoryRegion() as region:
                    shared_s = _best_pass_s(client.infer, _tile_batches(shape, scale.transport_bytes, None, region), scale.rounds)
                shared = {"shared_memory_mb_per_s": total / _MB / shared_s, "shared_memory_cost_x": shared_s / raw_s}
        rows.append({**shared,
            "shape": list(shape), "tile_mb": tile_bytes / _MB, "tiles_per_call": len(inline[0]), "total_mb": total / _MB,
            "raw_copy_mb_per_s": total / _MB / raw_s, "inline_mb_per_s": total / _MB / inline_s,
            "reference_mb_per_s": total / _MB / referenced_s,
            "inline_cost_x": inline_s / raw_s, "reference_cost_x": referenced_s / raw_s, "sha256_cost_x": sha256_s / raw_s,
        })
    return {"tiles": rows}


# -- batching -----------------------------------------------------------------------------------


def _clients_run(target: str, clients: int, requests: int) -> dict[str, float]:
    """``clients`` threads, each with its own channel, sending one-tile requests; ``requests`` in all."""
    from nightshift.core.client import TaskClient

    rng = np.random.default_rng(clients)
    shape, bands = DenseLayerModel.shape, _band_names(DenseLayerModel.shape[0])
    tiles = [make_tile(rng.standard_normal(shape, dtype=np.float32), bands=bands, survey="bench", field=f"c{i}",
                       inline_limit_bytes=_MESSAGE_LIMIT) for i in range(clients)]
    latencies: list[list[float]] = [[] for _ in range(clients)]
    per_client = max(1, requests // clients)
    start = threading.Barrier(clients + 1)

    def client_loop(index: int) -> None:
        with TaskClient(target, timeout_s=120) as client:
            client.infer([tiles[index]])  # untimed: connection set-up
            start.wait()
            for _ in range(per_client):
                began = time.perf_counter()
                response = client.infer([tiles[index]])
                latencies[index].append(time.perf_counter() - began)
                if response.results[0].tile_id != tiles[index].tile_id:
                    raise RuntimeError("a client received another client's result")

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    every = [x for client in latencies for x in client]
    if len(every) != per_client * clients:
        raise RuntimeError(f"{per_client * clients - len(every)} requests failed")
    return {"tiles_per_s": len(every) / elapsed, "latency_p50_ms": 1e3 * statistics.median(every),
            "latency_p99_ms": 1e3 * float(np.percentile(every, 99))}


def bench_batching(scale: Scale, work_dir: Path, delay_ms: float = 2.0) -> dict[str, Any]:
    """Throughput of one-tile requests from 1, 4 and 16 clients, without and with server-side batching."""
    figures: dict[str, Any] = {"model": DenseLayerModel.summary, "max_delay_ms": delay_ms, "clients": {}}
    # One BLAS thread: on a small machine, BLAS threads spinning between calls starve the gRPC threads
    # (measured: 4x fewer requests/s on 2 cores), which would hide what batching does.
    single_threaded = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    for mode, delay in (("unbatched", 0.0), ("batched", delay_ms)):
        with _served("dense", work_dir, {**single_threaded, "NIGHTSHIFT_BATCH_MAX_DELAY_MS": str(delay)}) as target:
            for clients in scale.clients:
                figures["clients"].setdefault(str(clients), {})[mode] = _clients_run(target, clients, scale.batching_requests)
    for row in figures["clients"].values():
        row["speedup"] = row["batched"]["tiles_per_s"] / row["unbatched"]["tiles_per_s"]
    return figures


# -- object store --------------------------------------------------------------------------------

_SHARD_BYTES = 4 * 1024 * 1024  # the ingest service's shard size


def _best_s(action: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return min(times)


def bench_store(scale: Scale, work_dir: Path, store: Any) -> dict[str, Any]:
    """Shard put/get through S3 against write/read of the same bytes on local disk, and ranged tile reads."""
    from nightshift.core.store import sha256_hex

    rng = np.random.default_rng(0)
    shards = [rng.bytes(_SHARD_BYTES) for _ in range(scale.shard_count)]
    keys = [store.key("bench", "shards", f"{i:04d}") for i in range(len(shards))]
    disk = work_dir / "disk"
    disk.mkdir(exist_ok=True)
    paths = [disk / f"{i:04d}" for i in range(len(shards))]
    total_mb = len(shards) * _SHARD_BYTES / _MB
    put_s = _best_s(lambda: [store.put_bytes(k, s) for k, s in zip(keys, shards)], scale.rounds)
    get_s = _best_s(lambda: [store.get_bytes(k) for k in keys], scale.rounds)
    write_s = _best_s(lambda: [p.write_bytes(s) for p, s in zip(paths, shards)], scale.rounds)  # page cache, as the S3 server's
    read_s = _best_s(lambda: [p.read_bytes() for p in paths], scale.rounds)
    tile_bytes = 7 * 64 * 64 * 4  # a 64x64x7 float32 tile: one byte range of a shard, read as Infer reads it
    ranges = [tile_pb2.ObjectRef(bucket=store.bucket, key=keys[0], offset=o, size_bytes=tile_bytes,
                                 sha256=sha256_hex(shards[0][o : o + tile_bytes]))
              for o in range(0, _SHARD_BYTES - tile_bytes + 1, tile_bytes)]
    ranged_s = _best_s(lambda: [store.get_bytes(r) for r in ranges], scale.rounds)
    per_tile_s, by_run_s, run_tiles = _batch_reads_s(store, shards, keys, tile_bytes, scale.rounds)
    shutil.rmtree(disk)
    etag = {("md5" if md5 else "none"): _etag_server_costs(shards, work_dir / f"etag-{md5}", md5, scale.rounds) for md5 in (True, False)}
    return {
        "etag": etag, "etag_head_cpu_ratio": etag["none"]["server_cpu_ms_per_head"] / etag["md5"]["server_cpu_ms_per_head"],
        "etag_put_cpu_ratio": etag["none"]["server_cpu_ms_per_mb_put"] / etag["md5"]["server_cpu_ms_per_mb_put"],
        "shard_mb": _SHARD_BYTES / _MB, "shards": len(shards),
        "put_mb_per_s": total_mb / put_s, "get_mb_per_s": total_mb / get_s,
        "disk_write_mb_per_s": total_mb / write_s, "disk_read_mb_per_s": total_mb / read_s,
        "put_over_disk_write": write_s / put_s, "get_over_disk_read": read_s / get_s,
        "ranged_tile_reads_per_s": len(ranges) / ranged_s, "ranged_tile_mb_per_s": len(ranges) * tile_bytes / _MB / ranged_s,
        "batch_tiles": run_tiles, "per_tile_batch_reads_per_s": run_tiles / per_tile_s, "shard_run_reads_per_s": run_tiles / by_run_s,
        "shard_run_speedup": per_tile_s / by_run_s,
    }


def _process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _etag_server_costs(shards: list[bytes], data_dir: Path, etag_md5: bool, rounds: int) -> dict[str, float]:
    """Put and get rates of the shards, and the server's own CPU per MB and per HEAD, on an rclone server of its own
    with the ETag an MD5 of each object (rclone's default, the embedded one's) or none (issue 23 item 2)."""
    from nightshift.core.s3server import RcloneS3Server

    with RcloneS3Server(data_dir, etag_md5=etag_md5) as server:
        store = server.store()
        keys = [store.key("bench", "etag", f"{i:04d}") for i in range(len(shards))]
        total_mb = len(shards) * _SHARD_BYTES / _MB
        rounds = max(rounds, 3)  # enough CPU ticks (10 ms) to count at the quick scale too
        cpu = _process_cpu_s(server.pid)
        put_s = _best_s(lambda: [store.put_bytes(k, s) for k, s in zip(keys, shards)], rounds)
        put_cpu, cpu = _process_cpu_s(server.pid) - cpu, _process_cpu_s(server.pid)
        get_s = _best_s(lambda: [store.get_bytes(k) for k in keys], rounds)
        get_cpu, cpu = _process_cpu_s(server.pid) - cpu, _process_cpu_s(server.pid)
        heads = [store.size_of(keys[i % len(keys)]) for i in range(400)]  # the existence checks of idempotent writes
        head_cpu = _process_cpu_s(server.pid) - cpu
    shutil.rmtree(data_dir, ignore_errors=True)
    return {"put_mb_per_s": total_mb / put_s, "get_mb_per_s": total_mb / get_s,
            "server_cpu_ms_per_mb_put": 1e3 * put_cpu / (rounds * total_mb), "server_cpu_ms_per_mb_get": 1e3 * get_cpu / (rounds * total_mb),
            "server_cpu_ms_per_head": 1e3 * head_cpu / len(heads)}


def _batch_reads_s(store: Any, shards: list[bytes], keys: list[str], tile_bytes: int, rounds: int) -> tuple[float, float, int]:
    """Seconds to decode every tile of the shards in batches of 32 as ``Infer`` does (8 fetch threads): one GET per
    tile, as before issue 23 item 5, and one GET per shard run (``decode_arrays``); and the tile count."""
    from concurrent.futures import ThreadPoolExecutor

    from nightshift.core.codec import decode_arrays
    from nightshift.core.store import sha256_hex

    tiles = [tile_pb2.NDArray(dtype=tile_pb2.DATA_TYPE_FLOAT32, shape=(tile_bytes // 4,), object_ref=tile_pb2.ObjectRef(
                 bucket=store.bucket, key=key, offset=o, size_bytes=tile_bytes, sha256=sha256_hex(shard[o : o + tile_bytes])))
             for shard, key in zip(shards, keys) for o in range(0, len(shard) - tile_bytes + 1, tile_bytes)]
    batches = [tiles[i : i + 32] for i in range(0, len(tiles), 32)]
    with ThreadPoolExecutor(8) as pool:
        per_tile_s = _best_s(lambda: [list(pool.map(lambda t: decode_arrays([t], store=store), b)) for b in batches], rounds)
        by_run_s = _best_s(lambda: [decode_arrays(b, store=store, map_runs=pool.map) for b in batches], rounds)
    return per_tile_s, by_run_s, len(tiles)


# -- the night -----------------------------------------------------------------------------------


def _deliver(store: Any, night: str, copies: int, seed: int) -> None:
    """Write ``copies`` of the simulated night (each with its own noise) into ``night``'s raw area, fields renamed per copy."""
    from nightshift.orchestration.layout import NightLayout
    from nightshift.orchestration.simulate import simulate_night

    target = NightLayout(store, night).raw_prefix
    for copy in range(copies):
        scratch = f"1999-01-{copy + 1:02d}"
        simulate_night(store, scratch, seed=seed + copy)
        source = NightLayout(store, scratch).raw_prefix
        for key in list(store.list_keys(source)):
            survey, field, band = key[len(source):].split("/")
            store.put_bytes(f"{target}{survey}/{field}c{copy:02d}/{band}", store.get_bytes(key))
            store.delete(key)


def _busy_s(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of ``intervals``."""
    busy, reach = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end > reach:
            busy += end - max(start, reach)
            reach = end
    return busy


def _task_run_intervals(flow_run_id: Any) -> list[tuple[float, float]]:
    """(start, end) in epoch seconds of every task run of the flow run, from Prefect's API."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    intervals: list[tuple[float, float]] = []
    with get_client(sync_client=True) as client:
        while True:
            page = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                                         offset=len(intervals), limit=200)
            intervals += [(r.start_time.timestamp(), r.end_time.timestamp()) for r in page if r.start_time and r.end_time]
            if len(page) < 200:
                return intervals


def _timed_night(store: Any, night: str, run: Callable[[str], tuple[Any, Any]]) -> dict[str, Any]:
    """Time ``run(night)`` (it returns the summary and the flow run's id) on what was delivered into ``night``."""
    before = set(store.list_keys(""))
    wall_started, epoch_started = time.perf_counter(), time.time()
    summary, flow_run_id = run(night)
    wall = time.perf_counter() - wall_started
    written = sorted(set(store.list_keys("")) - before)
    intervals = [(max(a, epoch_started), b) for a, b in _task_run_intervals(flow_run_id)]
    busy = _busy_s(intervals)
    tiles = sum(count for _, count in summary.inputs)
    groups: dict[str, int] = {}
    for key in written:
        groups[key.split("/")[0]] = groups.get(key.split("/")[0], 0) + 1
    return {
        "inputs": len(summary.inputs), "tiles": tiles, "wall_s": wall,
        "s_per_tile": wall / tiles if tiles else float("nan"), "stages_s": dict(summary.timings_s),
        "task_runs": len(intervals), "task_busy_s": busy, "prefect_overhead_fraction": max(0.0, wall - busy) / wall,
        "objects_written": len(written), "objects_per_tile": len(written) / tiles if tiles else float("nan"),
        "objects_by_prefix": groups,
    }


def _delivered_and_timed(store: Any, night: str, copies: int, seed: int, run: Callable[[str], tuple[Any, Any]]) -> dict[str, Any]:
    """Deliver ``copies`` of the simulated night into ``night``, then :func:`_timed_night`."""
    _deliver(store, night, copies, seed=seed)
    return {"copies": copies, **_timed_night(store, night, run)}


def _prefect_quiet() -> None:
    """Prefect quiet, and patient with its embedded server's start on a loaded machine (as ``nightshift night``)."""
    for name, value in (("DO_NOT_TRACK", "1"), ("PREFECT_SERVER_ANALYTICS_ENABLED", "false"), ("PREFECT_LOGGING_LEVEL", "WARNING"),
                        ("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")):
        os.environ.setdefault(name, value)


def _embedded_runner(config: Any) -> Callable[[str], tuple[Any, Any]]:
    """Runs the nightly flow on a night in this process (Prefect's embedded server): (summary, flow run id)."""
    from nightshift.orchestration.nightly import nightly  # imports Prefect

    def run(night: str) -> tuple[Any, Any]:
        state = nightly(config=config, night=night, return_state=True)
        return state.result(), state.state_details.flow_run_id

    return run


def bench_night(scale: Scale, work_dir: Path) -> dict[str, Any]:
    """The nightly flow on 1x, 4x and 16x the cheap simulated night, after one untimed warm-up night; then the first
    scale again through a persistent Prefect server on PostgreSQL and two process workers (after a warm-up night there)."""
    _prefect_quiet()
    from nightshift.orchestration.config import NightConfig, ServiceEndpoint
    from nightshift.orchestration.launcher import (
        LocalNight,
        ingest_command,
        tilestats_command,
    )
    from nightshift.orchestration.simulate import SIMULATED_SURVEYS

    runs: dict[str, Any] = {}
    with LocalNight(work_dir / "night") as local:
        store = local.start_s3()
        os.environ.update(store.config.to_env())  # the flow's tasks read the store from the environment
        failed = local.start_services([ingest_command(), *(tilestats_command(f"tilestats-{s.name}", s.band_names)
                                                            for s in SIMULATED_SURVEYS)], timeout_s=180)
        if failed:
            raise RuntimeError(f"services did not start: {failed}")
        config = NightConfig(surveys=SIMULATED_SURVEYS, ingest_target=local.services["ingest"].target,
                             services=tuple(ServiceEndpoint(name=n, target=s.target) for n, s in local.services.items() if n != "ingest"))
        from nightshift.orchestration.prefect_server import PrefectTier

        embedded = _embedded_runner(config)
        labels = (("warm-up", 1), *((f"{k}x", k) for k in scale.night_scales))
        for index, (label, copies) in enumerate(labels):
            runs[label] = _delivered_and_timed(store, f"2030-01-{index + 1:02d}", copies, 100 * index, embedded)
        server: dict[str, Any] = {"workers": _SERVER_WORKERS, "runs": {}}
        with PrefectTier(work_dir / "prefect", workers=_SERVER_WORKERS) as tier:
            with tier.settings():  # the task runs are read from the tier's server
                runs_on_tier = ((labels[0], True), (labels[1], True), ((f"{labels[1][0]} cold", labels[1][1]), False))
                for index, ((label, copies), warm) in enumerate(runs_on_tier, start=len(labels)):
                    tier.deploy(config, warm_starts=warm)  # cold: each flow run a new interpreter, the process worker's default
                    server["runs"][label] = _delivered_and_timed(store, f"2030-01-{index + 1:02d}", copies, 100 * index,
                                                                 tier.run_night)
    return {"workload": "simulate_night (2 GLIMPSE-like fields of 256x256 px in 2 bands, a 2-band nside 32 HEALPix sky) "
                        "x copies; ingest + tile statistics services", "runs": runs, "server": server}


# -- a Rubin-sized night, and replicas -----------------------------------------------------------

TASK_RUN_BOUND = 2000
"""The most task runs a flow run of a Rubin-sized night should hold (issue 22: Prefect's self-hosted server
is known to hang on thousands of task submissions in one flow)."""
_SCALE_BANDS = ("g", "r")
_SCALE_WINDOW_PX = 8
_SCALE_BATCH_TILES = 256


def _scale_survey() -> Any:
    from nightshift.orchestration.config import BandConfig, FitsTiling, SurveyConfig

    return SurveyConfig(name="widefield", bands=tuple(BandConfig(name=b, unit="nJy") for b in _SCALE_BANDS),
                        tiling=FitsTiling(window_px=(_SCALE_WINDOW_PX,), overlap_fraction=0.0))


def _deliver_fields(store: Any, night: str, fields: int, field_px: int, seed: int) -> None:
    """``fields`` wide-field images of ``field_px`` px square per band (noise on a flat sky, a TAN WCS) into ``night``."""
    import io

    from astropy.io import fits
    from astropy.wcs import WCS

    from nightshift.orchestration.layout import NightLayout

    rng = np.random.default_rng(seed)
    prefix = NightLayout(store, night).raw_prefix
    for index in range(fields):
        wcs = WCS(naxis=2)
        wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        wcs.wcs.crval = [150.0 + 0.1 * index, 2.0]
        wcs.wcs.crpix = [(field_px + 1) / 2, (field_px + 1) / 2]
        wcs.wcs.cdelt = [-0.2 / 3600, 0.2 / 3600]
        for band in _SCALE_BANDS:
            buffer = io.BytesIO()
            pixels = rng.normal(100.0, 5.0, (field_px, field_px)).astype(np.float32)
            fits.PrimaryHDU(pixels, header=wcs.to_header()).writeto(buffer)
            store.put_bytes(f"{prefix}widefield/f{index:03d}/{band}.fits", buffer.getvalue())


def _rss_mb(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _embedded_server_pids() -> list[int]:
    """This process's children that run Prefect's embedded server (uvicorn)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if parent == os.getpid() and b"uvicorn" in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
    return pids


class _MemorySampler:
    """Samples the resident memory of the processes ``pids()`` names, in MB, every half second while in use."""

    def __init__(self, pids: Callable[[], list[int]]) -> None:
        self.samples: list[float] = []
        self._pids = pids
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            self.samples.append(sum(_rss_mb(pid) for pid in self._pids()))
            if self._stop.wait(0.5):
                return

    def __enter__(self) -> _MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(sum(_rss_mb(pid) for pid in self._pids()))


def bench_scale(scale: Scale, work_dir: Path) -> dict[str, Any]:
    """A night of ``scale_fields`` fields cut into 8x8 px tiles (102,400 tiles at full scale) through ingest and tile
    statistics on the embedded Prefect server, after a one-field warm-up night: task runs, Prefect's overhead,
    and the embedded server's resident memory before, at its peak during, and after the night."""
    _prefect_quiet()
    from nightshift.orchestration.config import NightConfig, ServiceEndpoint
    from nightshift.orchestration.launcher import LocalNight, ingest_command, tilestats_command

    survey = _scale_survey()
    with LocalNight(work_dir / "scale") as local:
        store = local.start_s3()
        os.environ.update(store.config.to_env())
        failed = local.start_services([ingest_command(), tilestats_command("tilestats-widefield", survey.band_names)], timeout_s=180)
        if failed:
            raise RuntimeError(f"services did not start: {failed}")
        config = NightConfig(surveys=(survey,), ingest_target=local.services["ingest"].target,
                             services=(ServiceEndpoint(name="tilestats-widefield", target=local.services["tilestats-widefield"].target,
                                                       batch_tiles=_SCALE_BATCH_TILES, timeout_s=600),))
        embedded = _embedded_runner(config)
        _deliver_fields(store, "2031-01-01", 1, scale.scale_field_px, seed=0)
        warm_up = _timed_night(store, "2031-01-01", embedded)  # the process's first flow run starts the embedded server
        _deliver_fields(store, "2031-01-02", scale.scale_fields, scale.scale_field_px, seed=1)
        with _MemorySampler(_embedded_server_pids) as memory:
            night = _timed_night(store, "2031-01-02", embedded)
    return {"workload": f"{scale.scale_fields} fields of {scale.scale_field_px} px in 2 bands, {_SCALE_WINDOW_PX} px tiles; "
                        f"ingest + tile statistics, {_SCALE_BATCH_TILES} tiles per call",
            "fields": scale.scale_fields, "task_run_bound": TASK_RUN_BOUND, "warm_up": warm_up, "night": night,
            "server_rss_mb": {"before": memory.samples[0], "peak": max(memory.samples), "after": memory.samples[-1],
                              "samples": len(memory.samples)}}


def _balance(store: Any, replicas: Sequence[Any], calls: int) -> dict[str, Any]:
    """Share of ``calls`` one-tile Infer calls, sent as the night sends them, that each of ``replicas`` answered."""
    from nightshift.orchestration.config import ServiceEndpoint
    from nightshift.orchestration.fanout import call_batches, describe, infer_batches
    from nightshift.orchestration.layout import NightLayout

    plan = describe(ServiceEndpoint(name=f"replicas-{len(replicas)}", target="ipv4:" + ",".join(r.target for r in replicas),
                                    batch_tiles=1, timeout_s=60))
    rng = np.random.default_rng(len(replicas))
    tiles = [make_tile(rng.normal(size=(len(plan.bands), 8, 8)).astype(np.float32), bands=plan.bands, survey="bench",
                       field=f"balance{len(replicas)}-{i}") for i in range(calls)]
    before = [r.request_count("Infer") for r in replicas]
    outcome = infer_batches(store, NightLayout(store, "2032-01-01"), plan, f"balance-{len(replicas)}", call_batches(plan, tiles))
    served = [r.request_count("Infer") - b for r, b in zip(replicas, before)]
    even = outcome.calls / len(replicas)
    return {"replicas": len(replicas), "seen_replicas": plan.replicas, "in_flight": plan.max_in_flight, "calls": outcome.calls,
            "shares": [n / outcome.calls for n in served], "max_deviation_from_even": max(abs(n - even) for n in served) / even}


def bench_replicas(scale: Scale, work_dir: Path, delay_ms: float = 200.0) -> dict[str, Any]:
    """Balance of one target over 2 and 4 tile-statistics replicas; the simulated night (4x at full scale) with 1 and 2 replicas
    of an I/O-bound service (``delay_ms`` per call, 1 call in flight per replica), after an untimed warm-up night."""
    _prefect_quiet()
    from nightshift.orchestration.config import NightConfig, ServiceEndpoint
    from nightshift.orchestration.launcher import LocalNight, ServiceCommand, ingest_command, tilestats_command
    from nightshift.orchestration.simulate import SIMULATED_SURVEYS

    bands = SIMULATED_SURVEYS[0].band_names
    iobound = [ServiceCommand(f"iobound-{i}", (sys.executable, "-m", "nightshift.orchestration.benchmarks", "serve", "iobound",
                                               "--band-names", *bands, "--delay-ms", str(delay_ms))) for i in range(2)]
    with LocalNight(work_dir / "replicas") as local:
        store = local.start_s3()
        os.environ.update(store.config.to_env())
        failed = local.start_services([ingest_command(), *(tilestats_command(f"tilestats-{i}", bands) for i in range(4)), *iobound],
                                      timeout_s=180)
        if failed:
            raise RuntimeError(f"services did not start: {failed}")
        stats = [local.services[f"tilestats-{i}"] for i in range(4)]
        balance = {str(n): _balance(store, stats[:n], scale.replica_calls) for n in (2, 4)}
        nights: dict[str, Any] = {}
        for index, replicas in enumerate((1, 1, 2)):  # the first: warm-up (the embedded server's start)
            target = "ipv4:" + ",".join(local.services[f"iobound-{i}"].target for i in range(replicas))
            config = NightConfig(surveys=SIMULATED_SURVEYS, ingest_target=local.services["ingest"].target, services=(
                ServiceEndpoint(name="iobound", target=target, max_concurrent_calls=1, batch_tiles=2, timeout_s=60),))
            run = _delivered_and_timed(store, f"2032-02-{index + 1:02d}", scale.replica_night_copies, 500 + index,
                                       _embedded_runner(config))
            nights["warm-up" if index == 0 else str(replicas)] = {**run, "replicas": replicas}
    return {"balance": balance, "iobound_delay_ms": delay_ms, "iobound_nights": nights}


# -- services ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ServiceBench:
    """How to run one service's ``bench``: its quick arguments and GPU batch sizes to try."""

    quick: tuple[str, ...]
    gpu_tiles: int
    gpu_batches: tuple[int, ...]


SERVICE_BENCHES = {
    "bubbles": ServiceBench(("--tiles", "4", "--batch-size", "2"), 1024, (16, 64, 128)),
    "clusters": ServiceBench(("--tiles", "8", "--batch-size", "4"), 8192, (64, 256, 512)),
    "filaments": ServiceBench(("--tiles", "4", "--batch-size", "2", "--rounds", "1"), 1024, (16, 64, 128)),
    "ghosts": ServiceBench(("--tiles", "2", "--batch-size", "1"), 256, (4, 16, 32)),
    "inclination": ServiceBench(("--tiles", "8", "--batch-size", "4"), 8192, (64, 256, 512)),
}


class _GpuSampler:
    """Samples the GPU's utilisation with ``nvidia-smi`` every half second while in use."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.5):
            out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-i", "0"],
                                 check=False, capture_output=True, text=True, timeout=10)
            if out.returncode == 0 and out.stdout.strip():
                self.samples.append(float(out.stdout.split()[0]))

    def __enter__(self) -> _GpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def gpu_name() -> str | None:
    """The first NVIDIA GPU's name (``nvidia-smi``), or None without one."""
    if shutil.which("nvidia-smi") is None:
        return None
    out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader", "-i", "0"], check=False, capture_output=True, text=True)
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def _run_json_command(argv: Sequence[str], *, timeout_s: float = _SERVICE_TIMEOUT_S) -> dict[str, Any]:
    """A benchmark command's figures (its last stdout line, JSON) with the wall time, or the error: one failure never stops the run."""
    started = time.perf_counter()
    try:
        figures = run_json_command(argv, timeout_s=timeout_s)
    except RuntimeError as exc:
        return {"error": str(exc), "command": shlex.join(argv)}
    return {**figures, "command": shlex.join(argv), "wall_s": time.perf_counter() - started}


def bench_services(quick: bool, gpu: bool, work_dir: Path) -> dict[str, Any]:
    """Each science service's ``bench`` (service Infer vs bare model); on a GPU, the best of several batch sizes."""
    results: dict[str, Any] = {}
    for task, how in SERVICE_BENCHES.items():
        script = console_script(f"nightshift-{task}")
        if script is None:
            results[task] = {"error": f"nightshift-{task} is not installed"}
            continue
        output = str(work_dir / f"{task}-bench")
        if not gpu:
            results[task] = _run_json_command([script, "bench", *(how.quick if quick else ()), "--output", output])
            continue
        tries = []
        for batch in how.gpu_batches:
            with _GpuSampler() as sampler:
                figures = _run_json_command([script, "bench", "--tiles", str(how.gpu_tiles), "--batch-size", str(batch),
                                             "--output", f"{output}-{batch}"])
            if sampler.samples:
                figures["gpu_utilisation_mean_pct"] = statistics.fmean(sampler.samples)
                figures["gpu_utilisation_max_pct"] = max(sampler.samples)
            tries.append(figures)
        measured = [t for t in tries if "error" not in t]
        best = max(measured, key=lambda t: t["tiles_per_s"]) if measured else tries[-1]
        results[task] = {**best, "gpu": gpu_name(), "batch_sizes_tried": {str(b): t.get("tiles_per_s") for b, t in zip(how.gpu_batches, tries)}}
    return results


def bench_ingest(scale: Scale, quick: bool, work_dir: Path) -> dict[str, Any]:
    """``nightshift-ingest bench`` at each nside: vectorised patches vs a per-patch ``gnomview`` loop."""
    script = console_script("nightshift-ingest")
    if script is None:
        return {"error": "nightshift-ingest is not installed"}
    runs = {}
    for nside in scale.ingest_nsides:
        extra: tuple[str, ...] = ()
        if quick:
            extra = ("--fields", "2", "--patch-px", "32", "--pixel-scale-arcmin", "60", "--gnomview-patches", "4",
                     "--image-px", "256", "--image-bands", "1", "--window-px", "128")
        elif nside != max(scale.ingest_nsides):  # the FITS part once, with the largest sky
            extra = ("--gnomview-patches", "30", "--image-px", "1024", "--image-bands", "1")
        runs[str(nside)] = _run_json_command([script, "bench", "--nside", str(nside), *extra,
                                              "--output", str(work_dir / f"ingest-{nside}.json")])
    return {"nside": runs}


# -- the table -----------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.{digits}g}" if abs(value) < 10 ** digits else f"{value:,.0f}"
    return str(value)


def _verdict(met: bool, goal: str) -> str:
    return f"{goal}: {'met' if met else 'gap'}"


def table_rows(results: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(area, measurement, figure, baseline measured in the same run, goal) rows of the results."""
    rows: list[tuple[str, str, str, str, str]] = []
    sections = results["sections"]
    for task, f in sections.get("services", {}).items():
        if "error" in f:
            rows.append(("service", task, "failed", f["error"][:120], ""))
            continue
        device = f.get("gpu") or f.get("device", "cpu")
        rows.append(("service", f"{task}: Infer over gRPC, {f['tiles']} tiles by reference, batch {f['batch_size']} ({device})",
                     f"{_fmt(f['tiles_per_s'])} tiles/s, p99 {_fmt(f['latency_p99_ms'])} ms",
                     f"bare model {_fmt(f['bare_tiles_per_s'])} tiles/s",
                     _verdict(f["overhead_ratio"] >= 0.9, f"ratio {f['overhead_ratio']:.2f} (>= 0.9)")))
    for nside, f in sections.get("ingest", {}).get("nside", {}).items():
        if "error" in f:
            rows.append(("ingest", f"nside {nside}", "failed", f["error"][:120], ""))
            continue
        rows.append(("ingest", f"HEALPix patches, nside {nside} x {f['fields']} bands, {f['patches']} patches of {f['patch_px']} px",
                     f"{_fmt(f['patches_per_s'])} patches/s; whole ingest to S3 {_fmt(f['healpix_ingest_patches_per_s'])} patches/s",
                     f"per-patch gnomview {_fmt(f['gnomview_patches_per_s'])} patches/s", f"{_fmt(f['speedup_vs_gnomview'])}x"))
        if "fits_tiling_mb_per_s" in f and nside == max(sections["ingest"]["nside"], key=int):
            rows.append(("ingest", f"FITS tiling, {_fmt(f['fits_mb'])} MB, {f['fits_tiles']} tiles",
                         f"{_fmt(f['fits_tiling_mb_per_s'])} MB/s", f"reading the files {_fmt(f['fits_read_mb_per_s'])} MB/s",
                         f"{_fmt(f['fits_tiling_over_read'])}x"))
    for f in sections.get("transport", {}).get("tiles", []):
        shape = "x".join(str(n) for n in (f["shape"][1], f["shape"][2], f["shape"][0]))
        large = f["tile_mb"] >= 1.0
        for path, goal in (("inline", 4.0), ("reference", 2.0), ("shared_memory", 1.5)):  # issue 23's goals for 8 MB calls
            if f"{path}_cost_x" not in f:
                continue  # no shared memory on the host that measured
            cost = f[f"{path}_cost_x"]
            floor = f"; its SHA-256 check alone {f['sha256_cost_x']:.1f}x" if path != "inline" and "sha256_cost_x" in f else ""
            rows.append(("transport", f"Infer {shape} float32 ({_fmt(f['tile_mb'])} MB), {f['tiles_per_call']}/call, {path.replace('_', ' ')}",
                         f"{_fmt(f[f'{path}_mb_per_s'])} MB/s", f"raw loopback socket copy {_fmt(f['raw_copy_mb_per_s'])} MB/s",
                         (_verdict(cost <= goal, f"cost {cost:.1f}x (<= {goal:g}x)") if large else f"cost {cost:.1f}x") + floor))
    batching = sections.get("batching", {})
    for clients, f in batching.get("clients", {}).items():
        rows.append(("batching", f"{clients} concurrent clients, 1-tile requests, max delay {_fmt(batching['max_delay_ms'])} ms",
                     f"batched {_fmt(f['batched']['tiles_per_s'])} tiles/s (p99 {_fmt(f['batched']['latency_p99_ms'])} ms)",
                     f"unbatched {_fmt(f['unbatched']['tiles_per_s'])} tiles/s (p99 {_fmt(f['unbatched']['latency_p99_ms'])} ms)",
                     f"{f['speedup']:.2f}x"))
    store = sections.get("store")
    if store:
        rows.append(("store", f"put {store['shards']} shards of {_fmt(store['shard_mb'])} MB", f"{_fmt(store['put_mb_per_s'])} MB/s",
                     f"local disk write {_fmt(store['disk_write_mb_per_s'])} MB/s", f"{store['put_over_disk_write']:.2f}x"))
        rows.append(("store", f"get {store['shards']} shards of {_fmt(store['shard_mb'])} MB", f"{_fmt(store['get_mb_per_s'])} MB/s",
                     f"local disk read {_fmt(store['disk_read_mb_per_s'])} MB/s", f"{store['get_over_disk_read']:.2f}x"))
        rows.append(("store", "ranged reads of 64x64x7 float32 tiles from a shard (SHA-256 checked)",
                     f"{_fmt(store['ranged_tile_reads_per_s'])} tiles/s, {_fmt(store['ranged_tile_mb_per_s'])} MB/s",
                     f"whole-shard get {_fmt(store['get_mb_per_s'])} MB/s", f"{store['ranged_tile_mb_per_s'] / store['get_mb_per_s']:.2f}x"))
        if "etag" in store:
            md5, none = store["etag"]["md5"], store["etag"]["none"]
            rows.append(("store", f"rclone server CPU per HEAD of a {_fmt(store['shard_mb'])} MB object / per MB of put / get, "
                                  "ETag none vs MD5 (rclone's default, the embedded server's)",
                         f"{_fmt(none['server_cpu_ms_per_head'])} / {_fmt(none['server_cpu_ms_per_mb_put'])} / "
                         f"{_fmt(none['server_cpu_ms_per_mb_get'])} ms",
                         f"{_fmt(md5['server_cpu_ms_per_head'])} / {_fmt(md5['server_cpu_ms_per_mb_put'])} / "
                         f"{_fmt(md5['server_cpu_ms_per_mb_get'])} ms",
                         f"HEAD {store['etag_head_cpu_ratio']:.2f}x, put {store['etag_put_cpu_ratio']:.2f}x the CPU"))
        if "shard_run_reads_per_s" in store:
            rows.append(("store", "batches of 32 tiles by reference decoded as Infer does: one GET per shard run",
                         f"{_fmt(store['shard_run_reads_per_s'])} tiles/s",
                         f"one GET per tile {_fmt(store['per_tile_batch_reads_per_s'])} tiles/s",
                         _verdict(store["shard_run_speedup"] >= 3, f"{store['shard_run_speedup']:.1f}x (>= 3x)")))
    night = sections.get("night", {}).get("runs", {})
    base = next((r for label, r in night.items() if label != "warm-up"), None)
    for label, f in night.items():
        stages = ", ".join(f"{k} {_fmt(v)}" for k, v in f["stages_s"].items() if k != "total")
        growth = "first flow run of the process (Prefect's start-up)" if label == "warm-up" else (
            f"{f['s_per_tile'] / base['s_per_tile']:.2f}x the {next(iter(k for k in night if k != 'warm-up'))} cost per tile" if base else "")
        rows.append(("night", f"nightly flow, {label} ({f['inputs']} inputs, {f['tiles']} tiles); stages s: {stages}",
                     f"{_fmt(f['wall_s'])} s wall, {_fmt(1e3 * f['s_per_tile'])} ms/tile", growth,
                     _verdict(f["prefect_overhead_fraction"] < 0.10, f"Prefect overhead {f['prefect_overhead_fraction']:.0%} (< 10%)")))
        rows.append(("night", f"objects written per tile, {label}", _fmt(f["objects_per_tile"]),
                     ", ".join(f"{k}/ {v}" for k, v in sorted(f["objects_by_prefix"].items())),
                     _verdict(f["objects_per_tile"] < 0.5, "far below 1")))
    server = sections.get("night", {}).get("server", {})
    for label, f in server.get("runs", {}).items():
        scale_label = label.removesuffix(" cold")
        if label == "warm-up" or scale_label not in night:
            continue
        embedded = night[scale_label]
        start = "a new interpreter, the process worker's default" if label.endswith(" cold") else "forked from the worker's zygote"
        rows.append(("night", f"nightly flow, {scale_label}, through the persistent Prefect server on PostgreSQL and {server['workers']} "
                              f"process workers (each flow run {start})",
                     f"{_fmt(f['wall_s'])} s wall, Prefect overhead {f['prefect_overhead_fraction']:.0%}",
                     f"embedded server {_fmt(embedded['wall_s'])} s wall, overhead {embedded['prefect_overhead_fraction']:.0%}",
                     _verdict(f["prefect_overhead_fraction"] < 0.10, f"{f['wall_s'] / embedded['wall_s']:.2f}x the wall time; "
                                                                     f"overhead {f['prefect_overhead_fraction']:.0%} (< 10%)")))
    rows += _scale_rows(sections)
    return rows


def _scale_rows(sections: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    rows = []
    scale = sections.get("scale")
    if scale:
        night, memory = scale["night"], scale["server_rss_mb"]
        rows.append(("scale", f"nightly flow, {night['tiles']:,} tiles ({scale['workload']})",
                     f"{_fmt(night['wall_s'])} s wall, {night['task_runs']} task runs, Prefect overhead "
                     f"{night['prefect_overhead_fraction']:.0%}",
                     f"one-field night: {scale['warm_up']['tiles']:,} tiles, {scale['warm_up']['task_runs']} task runs",
                     _verdict(night["task_runs"] <= scale["task_run_bound"] and night["prefect_overhead_fraction"] < 0.10,
                              f"<= {scale['task_run_bound']:,} task runs, overhead < 10%")))
        rows.append(("scale", f"embedded Prefect server's resident memory through the {night['tiles']:,}-tile night "
                              f"({memory['samples']} samples)",
                     f"peak {_fmt(memory['peak'])} MB, after {_fmt(memory['after'])} MB", f"before {_fmt(memory['before'])} MB",
                     _verdict(memory["peak"] <= 1.25 * memory["before"], f"peak {memory['peak'] / memory['before']:.2f}x (<= 1.25x)")))
    replicas = sections.get("replicas")
    if replicas:
        for n, f in replicas["balance"].items():
            rows.append(("replicas", f"share of {f['calls']} Infer calls per replica, {n} replicas behind one target "
                                     f"(round_robin, {f['in_flight']} in flight)",
                         " / ".join(f"{s:.0%}" for s in f["shares"]), f"even {1 / int(n):.0%} each",
                         _verdict(f["max_deviation_from_even"] <= 0.10, f"worst {f['max_deviation_from_even']:.0%} off even (<= 10%)")))
        nights = replicas["iobound_nights"]
        one, two = nights["1"], nights["2"]
        rows.append(("replicas", f"nightly flow, {two['tiles']} tiles, I/O-bound service ({_fmt(replicas['iobound_delay_ms'])} ms per "
                                 f"call), 2 replicas vs 1 (CPU-bound services cannot gain on 2 cores)",
                     f"{_fmt(two['wall_s'])} s wall, infer {_fmt(two['stages_s']['infer'])} s",
                     f"1 replica {_fmt(one['wall_s'])} s wall, infer {_fmt(one['stages_s']['infer'])} s",
                     f"{one['wall_s'] / two['wall_s']:.2f}x wall, {one['stages_s']['infer'] / two['stages_s']['infer']:.2f}x infer"))
    return rows


def markdown(results: dict[str, Any]) -> str:
    """The results as the markdown the README includes: when, where, the command, the table."""
    machine = results["machine"]
    lines = [
        (f"Measured {results['date']} on {machine['cpu']} ({machine['cores']} cores, {machine['gpu'] or 'no GPU'}), "
         f"{'quick smoke run' if results['quick'] else 'full run'}, in {_fmt(results['wall_s'])} s: `{results['command']}`"),
        "",
        "| area | measurement | figure | baseline (same run) | ratio / goal |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in table_rows(results)]
    return "\n".join(lines) + "\n"


def _print_table(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"nightshift bench ({results['machine']['cpu']}, {results['machine']['cores']} cores)")
    for column in ("area", "measurement", "figure", "baseline (same run)", "ratio / goal"):
        table.add_column(column, overflow="fold")
    for row in table_rows(results):
        table.add_row(*row)
    Console().print(table)


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def update_readme(readme: Path, table: str, *, begin: str = README_BEGIN, end: str = README_END) -> None:
    """Replace what lies between the README's ``begin`` and ``end`` markers (the bench ones by default) with ``table``."""
    text = readme.read_text()
    if begin not in text or end not in text:
        raise ValueError(f"{readme} has no {begin} ... {end} markers")
    head, rest = text.split(begin, 1)
    readme.write_text(f"{head}{begin}\n{table}{end}{rest.split(end, 1)[1]}")


# -- the command ---------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="a smoke run at the smallest scale (about a minute per section)")
    parser.add_argument("--gpu", action="store_true", help="run the services' benchmarks on the GPU at several batch sizes, "
                                                           "recording the GPU and its utilisation (needs an NVIDIA GPU)")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="what to measure (default: all)")
    parser.add_argument("--output-dir", type=Path, default=Path("bench/results"), help="where latest.json and latest.md go")
    parser.add_argument("--update-readme", type=Path, metavar="README",
                        help=f"also replace the table between {README_BEGIN} and {README_END} in this file")


def run(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """Run the chosen sections; return the results (also written to ``args.output_dir``)."""
    gpu = gpu_name()
    if args.gpu and gpu is None:
        raise SystemExit("--gpu: no NVIDIA GPU here (nvidia-smi finds none); GPU figures come only from a real GPU")
    scale = QUICK if args.quick else FULL
    started = time.perf_counter()
    sections: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="nightshift-bench-") as directory:
        work_dir = Path(directory)
        needs_store = {"transport", "store"} & set(args.sections)
        with contextlib.ExitStack() as stack:
            store = None
            if needs_store:
                from nightshift.core.s3server import start_local_s3

                store = stack.enter_context(start_local_s3("rclone", work_dir / "s3")).store()
            steps: dict[str, Callable[[], dict[str, Any]]] = {
                "services": lambda: bench_services(args.quick, args.gpu, work_dir),
                "ingest": lambda: bench_ingest(scale, args.quick, work_dir),
                "transport": lambda: bench_transport(scale, work_dir, store),
                "batching": lambda: bench_batching(scale, work_dir),
                "store": lambda: bench_store(scale, work_dir, store),
                "night": lambda: bench_night(scale, work_dir),
                "scale": lambda: bench_scale(scale, work_dir),
                "replicas": lambda: bench_replicas(scale, work_dir),
            }
            for name in SECTIONS:
                if name in args.sections:
                    section_started = time.perf_counter()
                    print(f"bench: {name} ...", file=sys.stderr, flush=True)
                    sections[name] = steps[name]()
                    print(f"bench: {name} done in {time.perf_counter() - section_started:.0f} s", file=sys.stderr, flush=True)
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {"cpu": _cpu_model(), "cores": os.cpu_count(), "gpu": gpu, "host": platform.node()},
        "command": command, "quick": args.quick, "wall_s": time.perf_counter() - started, "sections": sections,
    }


def main(args: argparse.Namespace) -> int:
    """``nightshift bench``: run, print the table, write ``latest.json`` and ``latest.md``."""
    command = "nightshift bench" + "".join(f" {a}" for a in sys.argv[2:]) if sys.argv[1:2] == ["bench"] else "nightshift bench"
    results = run(args, command)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "latest.json").write_text(json.dumps(results, indent=2, sort_keys=True, default=float) + "\n")
    table = markdown(results)
    (args.output_dir / "latest.md").write_text(table)
    if args.update_readme is not None:
        update_readme(args.update_readme, table)
    _print_table(results)
    return 0


if __name__ == "__main__":
    serve = argparse.ArgumentParser(description="serve one of the benchmark models (used by nightshift bench)")
    serve.add_argument("action", choices=["serve"])
    serve.add_argument("model", choices=["passthrough", "dense", "iobound"])
    serve.add_argument("--bands", type=int, default=7)
    serve.add_argument("--band-names", nargs="+", default=[], help="the bands the iobound model accepts")
    serve.add_argument("--delay-ms", type=float, default=0.0, help="the iobound model's wait per call")
    options = serve.parse_args()
    _serve(options.model, options.bands, options.band_names, options.delay_ms)
