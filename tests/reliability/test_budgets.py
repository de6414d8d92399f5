"""Budgets: a burst of large ``Infer`` calls against a real bubbles process sized for a small container.

The service reads its memory limit from ``NIGHTSHIFT_MEMORY_LIMIT_BYTES`` (as it would read the
container's cgroup ``memory.max``) and sizes its budgets from it: calls at once, and decoded tile
bytes in flight. The issue's burst (48 concurrent calls of many tiles by reference; before, the
service was OOM-killed inside a 4 GiB cgroup) gets RESOURCE_EXHAUSTED for what does not fit, and the
service keeps serving with its memory bounded.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2

from nightshift.core.client import TaskClient
from nightshift.core.tiles import make_tile
from nightshift.orchestration.launcher import LocalNight, RunningService, science_service_commands
from nightshift.v1 import tile_pb2

pytestmark = pytest.mark.reliability

MEMORY_LIMIT_BYTES = 512 * 2**20  # budgets: 8 calls at once, 128 MiB of decoded tiles (a quarter)
CALLS = 48
TILES_PER_CALL = 64  # bubbles tiles are 2 x 300 x 300 float32: 46 MB decoded per call, 2.2 GB for the burst


@pytest.fixture
def bubbles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[RunningService, list[tile_pb2.ImageTile]]]:
    monkeypatch.setenv("NIGHTSHIFT_MEMORY_LIMIT_BYTES", str(MEMORY_LIMIT_BYTES))
    with LocalNight(tmp_path / "night") as night:
        store = night.start_s3()
        commands, missing = science_service_commands(["bubbles"])
        assert not missing, missing
        assert not night.start_services(commands, timeout_s=180)
        pixels = np.random.default_rng(0).normal(0.5, 0.1, (2, 300, 300)).astype(np.float32)
        stored = make_tile(pixels, bands=["irac4", "mips24"], survey="glimpse", field="burst", store=store, inline_limit_bytes=0)
        assert stored.pixels.HasField("object_ref")  # every tile of the burst is read from the store
        tiles = []
        for n in range(TILES_PER_CALL):
            tile = tile_pb2.ImageTile()
            tile.CopyFrom(stored)
            tile.tile_id = f"burst-{n}"
            tiles.append(tile)
        yield night.services["bubbles"], tiles


def _peak_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/<pid>/status")


def test_a_burst_of_large_calls_is_resource_exhausted_beyond_the_budget_and_the_service_keeps_serving(bubbles) -> None:
    service, tiles = bubbles
    peak_before = _peak_rss_bytes(service.process.pid)
    release = threading.Barrier(CALLS)

    def call(_: int) -> str:
        with TaskClient(service.target, timeout_s=60) as client:
            release.wait()
            try:
                return "OK" if len(client.infer(tiles).results) == len(tiles) else "short"
            except grpc.RpcError as error:
                return f"{error.code().name}: {error.details()}"

    with concurrent.futures.ThreadPoolExecutor(CALLS) as pool:
        answers = list(pool.map(call, range(CALLS)))

    refused = [a for a in answers if a != "OK"]
    assert answers.count("OK") >= 1 and len(refused) >= CALLS - 8, answers
    assert all(a.startswith("RESOURCE_EXHAUSTED: service busy") for a in refused), sorted(set(refused))
    assert service.process.poll() is None, service.log_tail()
    with TaskClient(service.target, timeout_s=60) as client:
        assert client.health() == health_pb2.HealthCheckResponse.SERVING
        assert len(client.infer(tiles[:4]).results) == 4  # the budget is free again
    grown = _peak_rss_bytes(service.process.pid) - peak_before
    assert grown < MEMORY_LIMIT_BYTES, f"peak RSS grew by {grown / 2**20:.0f} MiB in the burst"
