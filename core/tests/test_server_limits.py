"""The runtime's defences against a caller: malformed messages, hostile WCS cards, bursts, and training that
must obey its caller. Real gRPC servers on 127.0.0.1 and the real local S3 server."""

from __future__ import annotations

import concurrent.futures
import json
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from astropy.wcs import WCS
from grpc_health.v1 import health_pb2
from sleepy_service import SleepyModel

from nightshift.core.client import TaskClient
from nightshift.core.server import REJECTED_TILES_METADATA, BackgroundServer, ServerOptions, memory_limit_bytes
from nightshift.core.store import ObjectStore
from nightshift.core.tiles import make_tile
from nightshift.v1 import results_pb2, task_service_pb2, task_service_pb2_grpc, tile_pb2

SERVING = health_pb2.HealthCheckResponse.SERVING
GARBAGE = b"\xff\xff\xff\xff\x0fnot a protobuf message"


def tile(value: float = 1.0, *, size: int = 8, wcs_cards: list[str] | None = None, **labels: str) -> tile_pb2.ImageTile:
    return make_tile(np.full((1, size, size), value, np.float32), bands=["image"], survey="test",
                     field=f"f{value}-{sorted(labels.items())}", labels=labels, wcs_cards=wcs_cards or [])


def assert_refused(call, code: grpc.StatusCode, match: str = "") -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    assert info.value.code() == code, (info.value.code(), info.value.details())
    assert match in (info.value.details() or ""), info.value.details()
    return info.value


@pytest.fixture
def server(store: ObjectStore):
    with BackgroundServer(SleepyModel(), store=store, options=ServerOptions(port=0)) as running:
        yield running


# -- malformed messages ----------------------------------------------------------------------------


def test_bytes_that_are_not_the_request_message_are_invalid_argument_without_internals(server: BackgroundServer) -> None:
    calls = {
        "Infer": lambda channel: channel.unary_unary("/nightshift.v1.TaskService/Infer")(GARBAGE, timeout=10),
        "Describe": lambda channel: channel.unary_unary("/nightshift.v1.TaskService/Describe")(GARBAGE, timeout=10),
        "Train": lambda channel: list(channel.unary_stream("/nightshift.v1.TaskService/Train")(GARBAGE, timeout=10)),
        "InferStream": lambda channel: list(channel.stream_stream("/nightshift.v1.TaskService/InferStream")(
            iter([task_service_pb2.InferStreamRequest(tiles=[tile()]).SerializeToString(), GARBAGE]), timeout=10)),
    }
    with grpc.insecure_channel(server.target) as channel:
        for method, call in calls.items():
            error = assert_refused(lambda: call(channel), grpc.StatusCode.INVALID_ARGUMENT, "malformed request")
            assert "<class" not in error.details() and "DecodeError" not in error.details(), (method, error.details())
    with TaskClient(server.target, timeout_s=10) as client:
        assert client.health() == SERVING and client.infer([tile(2.0)]).results[0].measurements[0].value == 128.0


def test_an_override_of_the_wrong_type_is_invalid_argument_naming_it(server: BackgroundServer) -> None:
    with TaskClient(server.target, timeout_s=10) as client:
        error = assert_refused(lambda: list(client.train(task_service_pb2.TrainRequest(overrides={"epochs": "abc"}))),
                               grpc.StatusCode.INVALID_ARGUMENT, "epochs='abc': expected an integer")
        assert "ValueError" not in error.details()
        assert_refused(lambda: list(client.train(task_service_pb2.TrainRequest(overrides={"epoch": "3"}))),
                       grpc.StatusCode.INVALID_ARGUMENT, "'epoch': not a field")


# -- WCS cards, tile by tile ----------------------------------------------------------------------


def good_cards(size: int = 8) -> list[str]:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["GLON-TAN", "GLAT-TAN"]
    wcs.wcs.crval = [30.0, 0.0]
    wcs.wcs.crpix = [size / 2, size / 2]
    wcs.wcs.cdelt = [-1 / 3600, 1 / 3600]
    return [card.image for card in wcs.to_header().cards]


def _set(cards: list[str], keyword: str, value: str) -> list[str]:
    return [f"{keyword:<8}= {value:>20}".ljust(80) if card.startswith(f"{keyword:<8}=") else card for card in cards]


HOSTILE = {
    "words": ["this is not a FITS header at all, just words" * 2],
    "singular": _set(_set(good_cards(), "CDELT1", "0.0"), "CDELT2", "0.0"),
    "unknown projection": _set(_set(good_cards(), "CTYPE1", "'GLON-XYZ'"), "CTYPE2", "'GLAT-XYZ'"),
    "mismatched axes": _set(good_cards(), "CTYPE2", "'DEC--TAN'"),
    "SIP order": _set(_set(good_cards(), "CTYPE1", "'GLON-TAN-SIP'"), "CTYPE2", "'GLAT-TAN-SIP'") + [f"{'A_ORDER':<8}= {100000:>20}".ljust(80)],
    "non-ASCII": [good_cards()[0][:70] + "\u00e9" * 10, *good_cards()[1:]],
}


def test_a_tile_with_hostile_wcs_cards_is_rejected_alone_and_the_rest_of_the_batch_served(server: BackgroundServer) -> None:
    tiles = [tile(float(n), wcs_cards=good_cards()) for n in range(8)]
    hostile = {}
    for index, (kind, cards) in zip(range(1, 8, 1), HOSTILE.items()):
        del tiles[index].wcs_cards[:]
        tiles[index].wcs_cards.extend(cards)
        hostile[tiles[index].tile_id] = kind
    with grpc.insecure_channel(server.target) as channel:
        response, call = task_service_pb2_grpc.TaskServiceStub(channel).Infer.with_call(
            task_service_pb2.InferRequest(tiles=tiles), timeout=10)
    assert [r.tile_id for r in response.results] == [t.tile_id for t in tiles]
    rejected = json.loads(dict(call.trailing_metadata())[REJECTED_TILES_METADATA])
    assert set(rejected) == set(hostile) and all("WCS" in reason for reason in rejected.values()), rejected
    for source, result in zip(tiles, response.results):
        if source.tile_id in hostile:
            assert result == results_pb2.TileResult(tile_id=source.tile_id)
        else:
            assert {m.quantity for m in result.measurements} == {"sum", "centre_lon"}
            assert result.measurements[0].value == 64.0 * float(source.field.split("-")[0][1:])


def test_infer_stream_reports_the_rejected_tiles_of_every_batch(server: BackgroundServer) -> None:
    bad = tile(5.0, wcs_cards=HOSTILE["singular"])
    with grpc.insecure_channel(server.target) as channel:
        call = task_service_pb2_grpc.TaskServiceStub(channel).InferStream(iter([
            task_service_pb2.InferStreamRequest(tiles=[tile(1.0, wcs_cards=good_cards()), bad]),
            task_service_pb2.InferStreamRequest(tiles=[tile(2.0, wcs_cards=HOSTILE["words"])]),
        ]), timeout=10)
        responses = list(call)
        assert [len(r.results) for r in responses] == [2, 1]
        assert len(json.loads(dict(call.trailing_metadata())[REJECTED_TILES_METADATA])) == 2


# -- budgets ------------------------------------------------------------------------------------------


def test_memory_limit_is_read_from_the_cgroup_v2_and_v1_files(tmp_path: Path) -> None:
    v2 = tmp_path / "v2"
    (v2 / "kubepods" / "pod1").mkdir(parents=True)
    (v2 / "kubepods" / "pod1" / "memory.max").write_text("4294967296\n")
    (tmp_path / "cgroup-v2").write_text("0::/kubepods/pod1\n")
    assert memory_limit_bytes(v2, tmp_path / "cgroup-v2") == 4 * 1024**3
    v1 = tmp_path / "v1"
    (v1 / "memory").mkdir(parents=True)
    (v1 / "memory" / "memory.limit_in_bytes").write_text(f"{2 * 1024**3}\n")
    (tmp_path / "cgroup-v1").write_text("4:memory:/\n1:cpu:/\n")
    assert memory_limit_bytes(v1, tmp_path / "cgroup-v1") == 2 * 1024**3
    (v2 / "kubepods" / "pod1" / "memory.max").write_text("max\n")  # no limit: the machine's memory
    assert 0 < memory_limit_bytes(v2, tmp_path / "cgroup-v2") < 2**60


def test_budgets_are_sized_from_the_memory_limit_unless_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    four_gib = ServerOptions(memory_limit_bytes=4 * 1024**3)
    assert four_gib.call_limit() == 32 and four_gib.inflight_byte_limit() == 1024**3
    assert ServerOptions(memory_limit_bytes=256 * 1024**2).call_limit() == 8  # never below 8
    monkeypatch.setenv("NIGHTSHIFT_GRPC_MAX_CONCURRENT_CALLS", "5")
    monkeypatch.setenv("NIGHTSHIFT_GRPC_MAX_INFLIGHT_BYTES", "1000")
    monkeypatch.setenv("NIGHTSHIFT_MEMORY_LIMIT_BYTES", str(2 * 1024**3))
    options = ServerOptions.from_env()
    assert (options.call_limit(), options.inflight_byte_limit(), options.memory_budget()) == (5, 1000, 2 * 1024**3)
    with pytest.raises(ValueError, match="max_inflight_bytes"):
        ServerOptions(max_inflight_bytes=-1)


def _burst(target: str, requests: list[list[tile_pb2.ImageTile]], timeout_s: float = 30) -> list[str]:
    """Send every request at once (one thread each); the status name of each answer."""
    start = threading.Barrier(len(requests))

    def call(tiles: list[tile_pb2.ImageTile]) -> str:
        with TaskClient(target, timeout_s=timeout_s) as client:
            start.wait()
            try:
                client.infer(tiles)
            except grpc.RpcError as error:
                assert "Traceback" not in (error.details() or "")
                return f"{error.code().name}: {error.details()}"
            return "OK"

    with concurrent.futures.ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(call, requests))


def test_a_burst_beyond_the_concurrent_call_bound_is_resource_exhausted(store: ObjectStore) -> None:
    options = ServerOptions(port=0, max_concurrent_calls=3, compute_slots=3)
    with BackgroundServer(SleepyModel(), store=store, options=options) as server:
        answers = _burst(server.target, [[tile(float(n), sleep_s="1.0")] for n in range(12)])
        with TaskClient(server.target, timeout_s=10) as client:
            assert client.health() == SERVING  # health is not counted: probes get through a saturated service
            assert client.infer([tile()]).results  # and the bound frees as calls end
    assert answers.count("OK") >= 3
    busy = [a for a in answers if a != "OK"]
    assert len(busy) >= 6 and all(a.startswith("RESOURCE_EXHAUSTED: service busy") and "at most 3" in a for a in busy), answers


def test_decoded_bytes_in_flight_are_bounded(store: ObjectStore) -> None:
    tile_bytes = 64 * 64 * 4
    options = ServerOptions(port=0, max_inflight_bytes=5 * tile_bytes, compute_slots=4)
    with BackgroundServer(SleepyModel(), store=store, options=options) as server:
        with TaskClient(server.target, timeout_s=10) as client:
            assert_refused(lambda: client.infer([tile(float(n), size=64) for n in range(6)]), grpc.StatusCode.RESOURCE_EXHAUSTED,
                           "split the batch")
        answers = _burst(server.target, [[tile(float(n), size=64, sleep_s="1.0"), tile(-float(n), size=64)] for n in range(6)])
        with TaskClient(server.target, timeout_s=10) as client:
            assert len(client.infer([tile(float(n), size=64) for n in range(5)]).results) == 5  # all of it free again
    assert 1 <= answers.count("OK") <= 2  # two calls of two tiles fit in five tiles' bytes
    assert all(a.startswith("RESOURCE_EXHAUSTED: service busy") and "decoded tiles" in a for a in answers if a != "OK"), answers


# -- training that obeys its caller ------------------------------------------------------------------


@pytest.fixture
def trainer(store: ObjectStore):
    from nightshift.core.registry import ModelRegistry

    registry = ModelRegistry(store, "sleepy")
    model = SleepyModel(registry=registry)
    with BackgroundServer(model, store=store, options=ServerOptions(port=0)) as running:
        yield running, model, registry


def _wait_until(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _train(target: str, timeout_s: float = 30, **overrides: str):
    channel = grpc.insecure_channel(target)
    call = task_service_pb2_grpc.TaskServiceStub(channel).Train(task_service_pb2.TrainRequest(overrides=overrides, seed=3),
                                                                timeout=timeout_s)
    return channel, call


def test_a_training_completes_and_registers_once(trainer) -> None:
    server, _, registry = trainer
    channel, call = _train(server.target, epochs="2")
    with channel:
        events = list(call)
    assert [e.progress.epoch for e in events[:-1]] == [1, 2] and events[-1].registered.model.version == "1"
    assert [m.version for m in registry.versions()] == ["1"] and registry.get().version == "1"


def test_a_cancelled_training_stops_and_registers_nothing_and_a_second_waits_for_it_to_stop(trainer) -> None:
    server, model, registry = trainer
    channel, call = _train(server.target, epochs="6", epoch_s="0.4")
    with channel:
        first = next(call)
        assert first.progress.epoch == 1
        second_channel, second = _train(server.target, epochs="1")
        with second_channel:
            assert_refused(lambda: list(second), grpc.StatusCode.RESOURCE_EXHAUSTED, "already in progress")
        call.cancel()
    # the worker thread is still in its epoch: the service still says it is training
    third_channel, third = _train(server.target, epochs="1")
    with third_channel:
        assert_refused(lambda: list(third), grpc.StatusCode.RESOURCE_EXHAUSTED, "already in progress")
    _wait_until(lambda: not server.server.servable._servicer._training)  # noqa: SLF001 - the runtime's own flag
    assert model.training_epochs_run <= 2  # stopped at the first report after the cancellation, not after 6
    assert registry.versions() == []
    with pytest.raises(Exception, match="no registered model"):
        registry.get()
    channel, call = _train(server.target, epochs="1")
    with channel:
        assert list(call)[-1].registered.model.version == "1"  # the service trains again


def test_a_cancellation_after_the_last_epoch_still_registers_nothing(trainer) -> None:
    server, model, registry = trainer
    channel, call = _train(server.target, epochs="1", epoch_s="0.6")
    with channel:
        assert next(call).progress.epoch == 1  # then 0.6 s of "evaluation" before it registers
        call.cancel()
    _wait_until(lambda: not server.server.servable._servicer._training)  # noqa: SLF001
    assert model.training_epochs_run == 1 and registry.versions() == []


def test_a_training_past_its_deadline_stops_and_registers_nothing(trainer) -> None:
    server, model, registry = trainer
    channel, call = _train(server.target, timeout_s=1.0, epochs="10", epoch_s="0.3")
    with channel:
        assert_refused(lambda: list(call), grpc.StatusCode.DEADLINE_EXCEEDED)
    _wait_until(lambda: not server.server.servable._servicer._training)  # noqa: SLF001
    assert model.training_epochs_run < 10 and registry.versions() == []
