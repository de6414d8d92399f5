"""The server runtime against real gRPC servers on 127.0.0.1 and the real local S3 server."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from sleepy_service import SleepyModel

from nightshift.core.client import TaskClient
from nightshift.core.server import DEFAULT_MAX_MESSAGE_BYTES, TASK_SERVICE_NAME, BackgroundServer, ServerOptions
from nightshift.core.shm import DEFAULT_SHARED_MEMORY_DIR, shared_memory_domain
from nightshift.core.store import ObjectStore, sha256_hex
from nightshift.core.tiles import make_tile
from nightshift.v1 import task_service_pb2, tile_pb2

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def tile(value: float = 1.0, *, size: int = 8, store: ObjectStore | None = None, **labels: str) -> tile_pb2.ImageTile:
    pixels = np.full((1, size, size), value, dtype=np.float32)
    return make_tile(pixels, bands=["image"], survey="test", field=f"f{value}-{sorted(labels.items())}",
                     labels=labels, store=store, inline_limit_bytes=64)


@pytest.fixture
def model() -> SleepyModel:
    return SleepyModel()


@pytest.fixture
def server(model: SleepyModel, store: ObjectStore):
    with BackgroundServer(model, store=store, options=ServerOptions(port=0, metrics_port=0)) as running:
        yield running


@pytest.fixture
def client(server: BackgroundServer):
    with TaskClient(server.target, timeout_s=10) as c:
        yield c


def assert_code(call, code: grpc.StatusCode, match: str) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    assert info.value.code() == code, info.value.details()
    assert match in info.value.details()
    return info.value


def test_health_is_not_serving_until_the_model_is_loaded(store: ObjectStore) -> None:
    gate = threading.Event()
    background = BackgroundServer(SleepyModel(load_gate=gate), store=store).start(wait_ready=False)
    try:
        with TaskClient(background.target, timeout_s=5) as client:
            assert client.health("liveness") == SERVING
            for service in ("", TASK_SERVICE_NAME, "sleepy"):
                assert client.health(service) == NOT_SERVING
            assert_code(lambda: client.infer([tile()]), grpc.StatusCode.UNAVAILABLE, "still loading")
            gate.set()
            client.wait_until_serving(timeout_s=10)
            for service in ("", TASK_SERVICE_NAME, "sleepy", "liveness"):
                assert client.health(service) == SERVING
    finally:
        background.stop()


def test_failed_load_is_reported(store: ObjectStore) -> None:
    with pytest.raises(OSError, match="weights missing"):
        BackgroundServer(SleepyModel(load_error=OSError("weights missing")), store=store).start()


def test_describe(client: TaskClient) -> None:
    described = client.describe()
    assert described.task == "sleepy"
    assert described.serving_model.version == "7"
    assert list(described.input.bands) == ["image"]
    assert described.input.dtype == tile_pb2.DATA_TYPE_FLOAT32
    assert described.output_kind == task_service_pb2.OUTPUT_KIND_MEASUREMENTS
    assert described.shared_memory_domain == shared_memory_domain(DEFAULT_SHARED_MEMORY_DIR)


def test_a_service_reading_no_shared_memory_advertises_none(store: ObjectStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NIGHTSHIFT_SHM_DIR", "off")
    options = ServerOptions.from_env(port=0)
    assert options.shared_memory_dir is None
    with BackgroundServer(SleepyModel(), store=store, options=options) as running, TaskClient(running.target) as client:
        assert client.describe().shared_memory_domain == ""


def test_infer_inline_and_by_reference_in_order(client: TaskClient, store: ObjectStore) -> None:
    tiles = [tile(1.0), tile(2.0, size=32, store=store), tile(3.0)]
    assert tiles[1].pixels.WhichOneof("storage") == "object_ref"
    response = client.infer(tiles)
    assert [r.tile_id for r in response.results] == [t.tile_id for t in tiles]
    assert [r.measurements[0].value for r in response.results] == [64.0, 2.0 * 32 * 32, 192.0]
    assert response.model.version == "7"
    assert client.infer([]).results == []


def test_infer_stream_answers_each_batch_in_order(client: TaskClient) -> None:
    batches = [[tile(1.0)], [tile(2.0), tile(3.0)], [tile(4.0)]]
    responses = list(client.infer_stream(batches))
    assert [[r.tile_id for r in resp.results] for resp in responses] == [[t.tile_id for t in b] for b in batches]


def test_unknown_model_version_is_not_found(client: TaskClient) -> None:
    assert_code(lambda: client.infer([tile()], model_version="99"), grpc.StatusCode.NOT_FOUND, "'99' is not served")


def test_train_streams_progress_then_the_registered_version(client: TaskClient) -> None:
    events = list(client.train(task_service_pb2.TrainRequest(preset="tiny", overrides={"epochs": "4"})))
    assert [e.progress.epoch for e in events[:-1]] == [1, 2, 3, 4]
    assert events[-1].registered.model.version == "8"


def test_evaluate_without_support_is_failed_precondition(client: TaskClient) -> None:
    assert_code(lambda: client.evaluate(task_service_pb2.EvaluateRequest(dataset="x")),
                grpc.StatusCode.FAILED_PRECONDITION, "has no evaluation")


def _wrong_dtype() -> tile_pb2.ImageTile:
    return make_tile(np.zeros((1, 8, 8), np.float64), bands=["image"], survey="t", field="f")


def _truncated_bytes() -> tile_pb2.ImageTile:
    bad = tile()
    bad.pixels.inline_data = bad.pixels.inline_data[:-4]
    return bad


def _shape_mismatch() -> tile_pb2.ImageTile:
    bad = tile()
    bad.pixels.shape[:] = [1, 8, 9]
    return bad


def _wrong_bands() -> tile_pb2.ImageTile:
    return make_tile(np.zeros((2, 8, 8), np.float32), bands=["g", "r"], survey="t", field="f")


def _bad_reference_size(store: ObjectStore) -> tile_pb2.ImageTile:
    bad = tile(5.0, size=32, store=store)
    bad.pixels.object_ref.size_bytes += 4
    return bad


def _bad_reference_digest(store: ObjectStore) -> tile_pb2.ImageTile:
    bad = tile(6.0, size=32, store=store)
    bad.pixels.object_ref.sha256 = "0" * 64
    return bad


def _no_tile_id() -> tile_pb2.ImageTile:
    bad = tile()
    bad.tile_id = ""
    return bad


@pytest.mark.parametrize(
    ("make_bad", "message"),
    [
        (lambda store: _wrong_dtype(), "pixel dtype DATA_TYPE_FLOAT64, expected DATA_TYPE_FLOAT32"),
        (lambda store: _truncated_bytes(), "252 bytes inline, expected 256"),
        (lambda store: _shape_mismatch(), "256 bytes inline, expected 288 for dtype float32 and shape (1, 8, 9)"),
        (lambda store: _wrong_bands(), "bands ('g', 'r'), expected ('image',)"),
        (_bad_reference_size, "reference names 4100 bytes, expected 4096"),
        (_bad_reference_digest, "sha256 does not match"),
        (lambda store: _no_tile_id(), "tile without a tile_id"),
    ],
    ids=["dtype", "byte-size", "shape", "bands", "reference-size", "reference-digest", "tile-id"],
)
def test_malformed_tiles_are_invalid_argument_and_the_server_keeps_serving(client, store, make_bad, message) -> None:
    error = assert_code(lambda: client.infer([tile(), make_bad(store)]), grpc.StatusCode.INVALID_ARGUMENT, message)
    assert "Traceback" not in error.details()
    assert client.health() == SERVING
    assert client.infer([tile()]).results[0].measurements[0].value == 64.0


def shard_tiles(store: ObjectStore, name: str, values: list[float], size: int = 8) -> list[tile_pb2.ImageTile]:
    """Tiles whose pixels lie side by side in one shard object, as the ingest writes them."""
    blobs = [np.full((1, size, size), v, "<f4").tobytes() for v in values]
    key = store.put_bytes(store.key("shards", name), b"".join(blobs)).key
    tiles = []
    for index, (value, blob) in enumerate(zip(values, blobs)):
        ref = tile_pb2.ObjectRef(bucket=store.bucket, key=key, offset=index * len(blob), size_bytes=len(blob), sha256=sha256_hex(blob))
        tiles.append(tile_pb2.ImageTile(tile_id=f"{name}-{index}", survey="test", field=name, bands=[tile_pb2.Band(name="image")],
                                        pixels=tile_pb2.NDArray(dtype=tile_pb2.DATA_TYPE_FLOAT32, shape=(1, size, size), object_ref=ref)))
    return tiles


def test_a_batch_over_several_shards_with_gaps_gets_each_tiles_own_pixels(client: TaskClient, store: ObjectStore) -> None:
    first, second = shard_tiles(store, "first", [1.0, 2.0, 3.0, 4.0]), shard_tiles(store, "second", [10.0, 20.0, 30.0])
    batch = [second[2], first[0], first[3], tile(5.0), first[1], second[0]]  # gaps at first[2] and second[1]
    response = client.infer(batch)
    assert [r.tile_id for r in response.results] == [t.tile_id for t in batch]
    assert [r.measurements[0].value for r in response.results] == [64.0 * v for v in (30.0, 1.0, 4.0, 5.0, 2.0, 10.0)]


def test_a_corrupt_tile_in_a_shard_run_is_invalid_argument_naming_it_alone(client: TaskClient, store: ObjectStore) -> None:
    tiles = shard_tiles(store, "run", [1.0, 2.0, 3.0, 4.0])
    victim = tiles[2].pixels.object_ref
    shard = bytearray(store.get_bytes(victim.key))
    shard[victim.offset + 7] ^= 0xFF
    store.put_bytes(victim.key, bytes(shard))
    error = assert_code(lambda: client.infer(tiles), grpc.StatusCode.INVALID_ARGUMENT, "sha256 does not match")
    assert "'run-2'" in error.details() and not any(f"'run-{i}'" in error.details() for i in (0, 1, 3))
    kept = [tiles[i] for i in (0, 1, 3)]  # the same run without it is read and computed
    assert [r.measurements[0].value for r in client.infer(kept).results] == [64.0, 128.0, 256.0]


def test_reference_to_a_missing_object_is_not_found(client: TaskClient, store: ObjectStore) -> None:
    missing = tile(7.0, size=32, store=store)
    store.delete(missing.pixels.object_ref.key)
    assert_code(lambda: client.infer([missing]), grpc.StatusCode.NOT_FOUND, "not found in object store")


def test_too_many_tiles_is_resource_exhausted(client: TaskClient) -> None:
    assert_code(lambda: client.infer([tile(float(i)) for i in range(9)]), grpc.StatusCode.RESOURCE_EXHAUSTED, "at most 8")


def test_default_message_limit_is_at_least_64_mib_and_carries_a_20_mib_tile(client: TaskClient) -> None:
    assert ServerOptions().max_message_bytes >= 64 * 1024 * 1024 == DEFAULT_MAX_MESSAGE_BYTES
    big = make_tile(np.ones((1, 2300, 2300), np.float32), bands=["image"], survey="t", field="big")
    assert len(big.pixels.inline_data) > 20 * 1024 * 1024
    assert client.infer([big]).results[0].measurements[0].value == 2300 * 2300


def test_oversize_message_is_resource_exhausted(store: ObjectStore) -> None:
    options = ServerOptions(port=0, max_message_bytes=1024 * 1024)
    with BackgroundServer(SleepyModel(), store=store, options=options) as small, TaskClient(small.target) as client:
        big = make_tile(np.ones((1, 600, 600), np.float32), bands=["image"], survey="t", field="big")
        assert_code(lambda: client.infer([big]), grpc.StatusCode.RESOURCE_EXHAUSTED, "")
        assert client.health() == SERVING


def test_missed_deadline_and_a_deadline_passed_in_the_queue(client: TaskClient, model: SleepyModel) -> None:
    assert_code(lambda: client.infer([tile(sleep_s="1.0")], timeout_s=0.2), grpc.StatusCode.DEADLINE_EXCEEDED, "")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        busy = pool.submit(client.infer, [tile(sleep_s="1.0", n="2")])
        time.sleep(0.2)  # the slow call now holds the only compute slot
        queued = tile(9.0)
        assert_code(lambda: client.infer([queued], timeout_s=0.3), grpc.StatusCode.DEADLINE_EXCEEDED, "")
        assert busy.result().results
    time.sleep(0.2)
    assert queued.tile_id not in model.computed  # dropped in the queue, never computed
    assert client.health() == SERVING


def test_unexpected_error_is_internal_without_a_stack_trace(client: TaskClient) -> None:
    error = assert_code(lambda: client.infer([tile(fail="x")]), grpc.StatusCode.INTERNAL, "internal error in Infer (error id")
    assert "secret" not in error.details() and "Traceback" not in error.details()


def test_reflection_lists_the_services(server: BackgroundServer) -> None:
    with grpc.insecure_channel(server.target) as channel:
        services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
    assert {TASK_SERVICE_NAME, "grpc.health.v1.Health"} <= services


def test_metrics_count_requests_errors_queue_and_compute(client: TaskClient, server: BackgroundServer) -> None:
    client.infer([tile()])
    with pytest.raises(grpc.RpcError):
        client.infer([_wrong_dtype()])
    error_counted = 'nightshift_grpc_errors_total{code="INVALID_ARGUMENT",method="Infer"} 1.0'
    deadline = time.monotonic() + 10  # the server counts a call after its status reached the client
    while True:
        text = urllib.request.urlopen(f"http://127.0.0.1:{server.server.metrics_port}/metrics", timeout=5).read().decode()
        if error_counted in text or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert 'nightshift_grpc_requests_total{code="OK",method="Infer"} 1.0' in text
    assert error_counted in text
    assert "nightshift_queue_seconds_count 1.0" in text
    assert "nightshift_compute_seconds_count 1.0" in text
    assert "nightshift_tiles_total 1.0" in text
    assert 'nightshift_grpc_inflight{method="Infer"} 0.0' in text


def test_options_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NIGHTSHIFT_GRPC_PORT", "6000")
    monkeypatch.setenv("NIGHTSHIFT_GRPC_GRACE_S", "2.5")
    monkeypatch.setenv("NIGHTSHIFT_METRICS_PORT", "9100")
    monkeypatch.setenv("NIGHTSHIFT_GRPC_PORT_FILE", "/run/nightshift/port")
    options = ServerOptions.from_env(host="0.0.0.0")
    assert (options.port, options.grace_s, options.metrics_port, options.host) == (6000, 2.5, 9100, "0.0.0.0")
    assert options.port_file == Path("/run/nightshift/port")


def test_sigterm_drains_the_call_in_flight_and_refuses_new_ones(tmp_path: Path, s3_server) -> None:
    port_file = tmp_path / "port"
    script = Path(__file__).with_name("sleepy_service.py")
    env = {**os.environ, **s3_server.config.to_env(), "NIGHTSHIFT_GRPC_PORT": "0",
           "NIGHTSHIFT_GRPC_PORT_FILE": str(port_file), "NIGHTSHIFT_GRPC_GRACE_S": "10"}
    process = subprocess.Popen([sys.executable, str(script)], stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text():
            assert process.poll() is None, process.stderr.read()
            assert time.monotonic() < deadline, "service did not start"
            time.sleep(0.05)
        with TaskClient(f"127.0.0.1:{port_file.read_text()}", timeout_s=20) as client, \
                concurrent.futures.ThreadPoolExecutor(1) as pool:
            client.wait_until_serving(timeout_s=30)
            in_flight = pool.submit(client.infer, [tile(sleep_s="2.0")])
            time.sleep(0.5)
            os.kill(process.pid, signal.SIGTERM)
            time.sleep(0.3)
            with pytest.raises(grpc.RpcError) as refused:
                client.infer([tile(2.0)], timeout_s=5)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert in_flight.result().results[0].measurements[0].value == 64.0
        assert process.wait(timeout=20) == 0
        log = process.stderr.read()
        assert '"msg": "draining"' in log and '"msg": "stopped"' in log
    finally:
        process.kill()
        process.wait()


def _concurrently(client: TaskClient, batches: list[list[tile_pb2.ImageTile]]) -> list[object]:
    """Send each batch in its own thread at once; each call's response, or the RpcError it raised."""
    def call(batch: list[tile_pb2.ImageTile]) -> object:
        try:
            return client.infer(batch)
        except grpc.RpcError as error:
            return error

    with concurrent.futures.ThreadPoolExecutor(len(batches)) as pool:
        return list(pool.map(call, batches))


def _compute_calls(server: BackgroundServer) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{server.server.metrics_port}/metrics", timeout=5).read().decode()
    return float(next(line.split()[1] for line in text.splitlines() if line.startswith("nightshift_compute_seconds_count")))


def test_server_side_batching_gives_each_caller_its_own_results_as_unbatched(store: ObjectStore) -> None:
    requests = [[tile(float(i), n=str(i))] for i in range(5)] + [[tile(10.0), tile(11.0, store=store, size=16)]]
    options = ServerOptions(port=0, metrics_port=0, batch_max_delay_ms=300)
    with BackgroundServer(SleepyModel(), store=store, options=options) as batching, TaskClient(batching.target) as client:
        batched = _concurrently(client, requests)
        calls = _compute_calls(batching)
    with BackgroundServer(SleepyModel(), store=store, options=ServerOptions(port=0)) as plain, TaskClient(plain.target) as client:
        unbatched = [client.infer(r) for r in requests]
    assert calls < len(requests)  # concatenated into fewer model calls
    assert [list(r.results) for r in batched] == [list(r.results) for r in unbatched]
    assert [[result.tile_id for result in r.results] for r in batched] == [[t.tile_id for t in r] for r in requests]


def test_server_side_batching_fails_only_the_request_that_fails(store: ObjectStore) -> None:
    requests = [[tile(1.0)], [tile(2.0, fail="x")], [tile(3.0), tile(4.0)]]
    options = ServerOptions(port=0, metrics_port=0, batch_max_delay_ms=300)
    with BackgroundServer(SleepyModel(), store=store, options=options) as batching, TaskClient(batching.target) as client:
        first, failed, third = _concurrently(client, requests)
        assert isinstance(failed, grpc.RpcError) and failed.code() == grpc.StatusCode.INTERNAL
        assert [r.tile_id for r in first.results] == [requests[0][0].tile_id]
        assert [r.measurements[0].value for r in third.results] == [3.0 * 64, 4.0 * 64]
        assert client.health() == SERVING


def test_batching_delay_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ServerOptions.from_env().batch_max_delay_ms == 0  # off unless asked for
    monkeypatch.setenv("NIGHTSHIFT_BATCH_MAX_DELAY_MS", "2.5")
    assert ServerOptions.from_env().batch_max_delay_ms == 2.5


_PAGE_FAULTS_OF_LARGE_REQUESTS = """
import resource, sys
from nightshift.core.server import reuse_freed_memory

def page_faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        blocks = [bytearray(8_000_000) for _ in range(3)]  # a request, its parsed copy, the decoded pixels
        del blocks
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

if sys.argv[1] == "reuse" and not reuse_freed_memory():
    sys.exit(3)
page_faults()  # the first round may fault: the heap grows once
print(page_faults())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_a_serving_process_receives_large_requests_into_reused_memory() -> None:
    def page_faults(mode: str) -> int:
        done = subprocess.run([sys.executable, "-c", _PAGE_FAULTS_OF_LARGE_REQUESTS, mode], capture_output=True, text=True, check=False)
        if done.returncode == 3:
            pytest.skip("this C library has no glibc mallopt")
        assert done.returncode == 0, done.stderr
        return int(done.stdout)

    # 30 blocks of 8 MB are about 59,000 pages: the default malloc faults most of them in again, every time
    assert page_faults("default") > 10_000
    assert page_faults("reuse") < 1_000
