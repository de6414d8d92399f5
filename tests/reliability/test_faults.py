"""Faults against real processes: a service killed mid-night, S3 down mid-night and at the start, a slow
service, a tampered tile, SIGTERM under load. Each night here is a real one of its own (``local_night``).

Covered in ``orchestration/tests`` and not repeated: a service down for a whole night, then the night
resumed without redoing work (``test_nightly.py::test_night_resumes_after_a_service_is_killed``), and a
malformed input quarantined while the night goes on (``test_night_end_to_end...``).
"""

from __future__ import annotations

import collections
import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2

from nightshift.core.client import TaskClient
from nightshift.core.errors import StoreUnavailable
from nightshift.core.s3server import RcloneS3Server
from nightshift.core.store import ObjectStore, sha256_hex
from nightshift.core.tiles import make_tile
from nightshift.orchestration.config import NightConfig
from nightshift.orchestration.launcher import LocalNight, RunningService
from nightshift.orchestration.layout import NightLayout
from nightshift.orchestration.nightly import NightIncomplete, nightly
from nightshift.orchestration.simulate import simulate_night
from nightshift.v1 import ingest_service_pb2, task_service_pb2, tile_pb2

pytestmark = [pytest.mark.reliability, pytest.mark.usefixtures("prefect_harness")]

SLEEPY_SERVICE = Path(__file__).resolve().parents[2] / "core" / "tests" / "sleepy_service.py"
_POLL_S = 0.02


def _wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(_POLL_S)


def _infer_records(store: ObjectStore) -> dict[str, task_service_pb2.InferResponse]:
    prefix = store.key("work", "infer") + "/"
    return {key: task_service_pb2.InferResponse.FromString(store.get_bytes(key)) for key in store.list_keys(prefix)}


def _tile_accounting(store: ObjectStore, night: str, run_id: str) -> dict[str, int]:
    """Check every tile of the run's inputs is in exactly one recorded result, and every object the manifest
    names has the bytes it says; return the counts."""
    layout = NightLayout(store, night)
    manifest = json.loads(store.get_bytes(layout.manifest(run_id)))
    for task in manifest["tasks"].values():
        for key, digest in task["catalogue"].items():
            assert sha256_hex(store.get_bytes(key)) == digest, f"{key} is not what the manifest says"
    for night_input in manifest["inputs"]:
        for file in night_input["files"]:
            assert sha256_hex(store.get_bytes(file["key"])) == file["sha256"]
    expected = {tile_id for i in manifest["inputs"] for tile_id in i["tile_ids"]}
    inferred = collections.Counter(r.tile_id for response in _infer_records(store).values() for r in response.results)
    duplicates = {tile_id: n for tile_id, n in inferred.items() if n != 1}
    assert not duplicates, f"tiles inferred more than once: {duplicates}"
    assert set(inferred) == expected, f"missing: {sorted(expected - set(inferred))[:5]}, unexpected: {sorted(set(inferred) - expected)[:5]}"
    rows = sum(task["rows"] for task in manifest["tasks"].values())
    return {"tiles": len(expected), "results": sum(inferred.values()), "rows": rows}


def test_a_service_killed_mid_night_is_retried_on_its_restarted_instance_and_every_tile_counts_once(
    local_night: LocalNight, config_of: Callable[..., NightConfig]
) -> None:
    store, night = local_night.store, "2026-04-01"
    simulate_night(store, night, seed=4)
    config = config_of(local_night, batch_tiles=1)  # one call per tile: many calls, so the kill lands mid-work
    victim = local_night.services["tilestats-glimpse"]
    restarted: list[RunningService] = []

    def kill_after_first_calls() -> None:
        _wait_for(lambda: victim.request_count("Infer") >= 3, 120, "the first Infer calls")
        local_night.kill("tilestats-glimpse")
        restarted.append(local_night.restart(victim, same_address=True))

    chaos = threading.Thread(target=kill_after_first_calls, daemon=True)
    chaos.start()
    summary = nightly(config=config, night=night)
    chaos.join(timeout=5)

    assert summary.complete
    assert restarted and restarted[0].request_count("Infer") > 0  # the rest of the night went to the new instance
    counts = _tile_accounting(store, night, summary.run_id)
    assert counts["tiles"] == counts["results"] > 0


def test_s3_stopped_and_restarted_mid_night_the_night_completes_and_references_only_whole_objects(
    local_night: LocalNight, config_of: Callable[..., NightConfig]
) -> None:
    store, night = local_night.store, "2026-04-02"
    simulate_night(store, night, seed=5)
    s3 = local_night.s3
    assert isinstance(s3, RcloneS3Server)
    outage: list[float] = []

    def stop_s3_for_two_seconds() -> None:
        _wait_for(lambda: any(store.list_keys(store.key("work", "infer") + "/")), 120, "the first Infer record")
        port = s3.port
        s3.stop()
        started = time.monotonic()
        time.sleep(2.0)
        s3.start(port=port)
        outage.append(time.monotonic() - started)

    chaos = threading.Thread(target=stop_s3_for_two_seconds, daemon=True)
    chaos.start()
    summary = nightly(config=config_of(local_night, batch_tiles=1), night=night)
    chaos.join(timeout=10)

    assert outage and summary.complete
    counts = _tile_accounting(store, night, summary.run_id)
    assert counts["tiles"] == counts["results"] > 0


def test_s3_down_at_the_start_fails_clearly_after_bounded_retries_and_marks_nothing_done(
    local_night: LocalNight, config_of: Callable[..., NightConfig]
) -> None:
    store, night = local_night.store, "2026-04-03"
    simulate_night(store, night, seed=6)
    s3 = local_night.s3
    assert isinstance(s3, RcloneS3Server)
    port = s3.port
    s3.stop()
    try:
        with pytest.raises(StoreUnavailable, match=r"unavailable .* after \d+ attempts"):
            nightly(config=config_of(local_night), night=night)
    finally:
        s3.start(port=port)
    assert list(store.list_keys(store.key("runs") + "/")) == []
    assert not store.exists(NightLayout(store, night).latest)


def test_a_tile_whose_bytes_no_longer_match_its_checksum_is_reported_and_never_inferred(
    local_night: LocalNight, config_of: Callable[..., NightConfig]
) -> None:
    store, night = local_night.store, "2026-04-04"
    simulate_night(store, night, seed=7)
    ingest_only = config_of(local_night).model_copy(update={"services": ()})
    first = nightly(config=ingest_only, night=night)  # tiles ingested and recorded, nothing inferred
    layout = NightLayout(store, night)
    index = ingest_service_pb2.TileIndex.FromString(
        store.get_bytes(next(k for k in store.list_keys(store.key("work", "ingest") + "/"))))
    victim = next(t for t in index.tiles if t.pixels.WhichOneof("storage") == "object_ref")
    ref = victim.pixels.object_ref
    shard = bytearray(store.get_bytes(ref.key))
    shard[ref.offset] ^= 0xFF  # one flipped byte inside the tile's range: same size, other content
    store.put_bytes(ref.key, bytes(shard))

    with pytest.raises(NightIncomplete, match="sha256 does not match"):
        nightly(config=config_of(local_night), night=night)

    inferred = {r.tile_id for response in _infer_records(store).values() for r in response.results}
    assert inferred and victim.tile_id not in inferred  # the other batches went through; the tampered tile never did
    assert json.loads(store.get_bytes(layout.latest))["run_id"] == first.run_id  # no run was published


def _start_sleepy(tmp_path: Path, **env: str) -> tuple[subprocess.Popen[str], str]:
    port_file = tmp_path / "port"
    process = subprocess.Popen(
        [sys.executable, str(SLEEPY_SERVICE)], stderr=subprocess.PIPE, text=True,
        env={**os.environ, "NIGHTSHIFT_GRPC_HOST": "127.0.0.1", "NIGHTSHIFT_GRPC_PORT": "0",
             "NIGHTSHIFT_GRPC_PORT_FILE": str(port_file), **env},
    )
    _wait_for(lambda: process.poll() is not None or (port_file.exists() and bool(port_file.read_text())), 60, "the sleepy service")
    assert process.poll() is None, process.stderr.read() if process.stderr else ""
    return process, f"127.0.0.1:{port_file.read_text()}"


def _sleepy_tile(sleep_s: float, value: float = 1.0) -> tile_pb2.ImageTile:
    return make_tile(np.full((1, 4, 4), value, np.float32), bands=["image"], survey="s", field="f",
                     labels={"sleep_s": str(sleep_s)})


def test_a_slow_service_hits_the_deadline_queued_calls_are_dropped_and_nothing_hangs(tmp_path: Path) -> None:
    process, target = _start_sleepy(tmp_path)
    try:
        with TaskClient(target, timeout_s=1.0) as client, concurrent.futures.ThreadPoolExecutor(2) as pool:
            client.wait_until_serving(timeout_s=30)
            started = time.monotonic()
            slow = pool.submit(client.infer, [_sleepy_tile(3.0)])
            time.sleep(0.2)
            queued = pool.submit(client.infer, [_sleepy_tile(0.0)])  # behind the slow batch in the one compute slot
            for call in (slow, queued):
                with pytest.raises(grpc.RpcError) as late:
                    call.result(timeout=10)
                assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert time.monotonic() - started < 3.0  # the caller was answered before the slow batch ended
            _wait_for(lambda: client.health() == health_pb2.HealthCheckResponse.SERVING, 10, "health")
            assert client.infer([_sleepy_tile(0.0, 2.0)], timeout_s=10).results[0].measurements[0].value == 32.0
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    log = process.stderr.read() if process.stderr else ""
    # The slow call is reported in the service's own log; the queued one too when it reached the
    # handler before its deadline (on a loaded machine gRPC may expire it before: its caller still knows).
    assert log.count('"code": "DEADLINE_EXCEEDED"') in (1, 2)


def test_sigterm_under_load_turns_health_not_serving_first_finishes_calls_in_flight_and_drops_nothing(tmp_path: Path) -> None:
    # a drain notice of 3 s: with 1 s, a loaded CI machine once sent the first health poll after it had passed
    process, target = _start_sleepy(tmp_path, NIGHTSHIFT_GRPC_COMPUTE_SLOTS="8", NIGHTSHIFT_GRPC_GRACE_S="15",
                                     NIGHTSHIFT_GRPC_DRAIN_NOTICE_S="3.0")
    in_flight_calls = 8
    health_seen: list[str] = []
    try:
        with TaskClient(target, timeout_s=20) as client, concurrent.futures.ThreadPoolExecutor(in_flight_calls) as pool:
            client.wait_until_serving(timeout_s=30)
            calls = [pool.submit(client.infer, [_sleepy_tile(2.0, float(n))]) for n in range(in_flight_calls)]
            time.sleep(0.5)
            os.kill(process.pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    health_seen.append(health_pb2.HealthCheckResponse.ServingStatus.Name(client.health(timeout_s=1)))
                except grpc.RpcError as error:
                    health_seen.append(error.code().name)
                    break
                time.sleep(_POLL_S)
            with pytest.raises(grpc.RpcError) as refused:
                client.infer([_sleepy_tile(0.0)], timeout_s=5)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE  # refused with a status, not lost
            values = sorted(call.result(timeout=30).results[0].measurements[0].value for call in calls)
        assert values == [16.0 * n for n in range(in_flight_calls)]  # every call in flight finished with its own answer
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    not_serving = [status for status in health_seen if status != "SERVING"]
    assert not_serving[0] == "NOT_SERVING" and "SERVING" not in health_seen[health_seen.index("NOT_SERVING"):], health_seen
