"""Pixels in shared memory against a real service process on this host: the carrier, its refusals, the fallback.

The caller and the sleepy service (``core/tests/sleepy_service.py``, answering each tile's pixel sum) share one
shared-memory directory (a fresh one per test module, as a pod's ``emptyDir`` at ``/dev/shm``). A corrupt
region, a wrong size or a range past the region's end is INVALID_ARGUMENT naming the tile; a region the
service cannot see (removed, or in a directory it does not read) FAILED_PRECONDITION, after which
``TaskClient`` sends the pixels inline; the service keeps serving through all of it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from nightshift.core.client import TaskClient, batch_request_bytes
from nightshift.core.children import stop_child
from nightshift.core.shm import SharedMemoryRegion, shared_memory_domain
from nightshift.core.tiles import make_tile
from nightshift.v1 import task_service_pb2, task_service_pb2_grpc, tile_pb2

pytestmark = pytest.mark.reliability

SLEEPY_SERVICE = Path(__file__).resolve().parents[2] / "core" / "tests" / "sleepy_service.py"


def _serve(tmp_path: Path, shared_memory_dir: str) -> Iterator[str]:
    port_file = tmp_path / f"port-{os.urandom(4).hex()}"
    process = subprocess.Popen(
        [sys.executable, str(SLEEPY_SERVICE)], stderr=subprocess.DEVNULL,
        env={**os.environ, "NIGHTSHIFT_GRPC_HOST": "127.0.0.1", "NIGHTSHIFT_GRPC_PORT": "0",
             "NIGHTSHIFT_GRPC_PORT_FILE": str(port_file), "NIGHTSHIFT_SHM_DIR": shared_memory_dir},
    )
    try:
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text()):
            assert process.poll() is None and time.monotonic() < deadline, "the sleepy service did not start"
            time.sleep(0.02)
        target = f"127.0.0.1:{port_file.read_text()}"
        with TaskClient(target, timeout_s=20) as client:
            client.wait_until_serving(timeout_s=60)
        yield target
    finally:
        stop_child(process)


@pytest.fixture(scope="module")
def shared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shm")


@pytest.fixture(scope="module")
def service(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from _serve(tmp_path_factory.mktemp("service"), str(shared_dir))


@pytest.fixture(scope="module")
def elsewhere(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A service reading another directory: it cannot see the caller's regions."""
    yield from _serve(tmp_path_factory.mktemp("elsewhere"), str(tmp_path_factory.mktemp("other-shm")))


def _tiles(region: SharedMemoryRegion, count: int = 3) -> list[tile_pb2.ImageTile]:
    return [make_tile(np.full((1, 64, 64), float(i + 1), np.float32), bands=["image"], survey="s", field=f"shm{i}",
                      shared_memory=region) for i in range(count)]


def _status(target: str, tiles: list[tile_pb2.ImageTile]) -> grpc.RpcError:
    """The service's own answer (no client fallback) to an Infer of ``tiles``."""
    with grpc.insecure_channel(target) as channel:
        with pytest.raises(grpc.RpcError) as info:
            task_service_pb2_grpc.TaskServiceStub(channel).Infer(task_service_pb2.InferRequest(tiles=tiles), timeout=20)
    assert "Traceback" not in (info.value.details() or "")
    return info.value


def _serves(target: str) -> None:
    with TaskClient(target, timeout_s=20) as client:
        assert client.infer([make_tile(np.ones((1, 4, 4), np.float32), bands=["image"], survey="s", field="ok")]).results[0].measurements[0].value == 16.0


def test_tiles_in_shared_memory_are_read_by_a_co_located_service(service: str, shared_dir: Path) -> None:
    with TaskClient(service, timeout_s=20, shared_memory_dir=shared_dir) as client, SharedMemoryRegion(shared_dir) as region:
        assert client.describe().shared_memory_domain == shared_memory_domain(shared_dir) != ""
        tiles = _tiles(region)
        assert len(batch_request_bytes(tiles)) < 1024  # the message carries references, no pixels
        response = client.infer(tiles)
    assert [r.measurements[0].value for r in response.results] == [4096.0, 8192.0, 12288.0]
    assert not region.path.exists()  # the caller's region is gone once its block ends


def test_a_corrupt_region_is_invalid_argument_naming_the_tile(service: str, shared_dir: Path) -> None:
    with SharedMemoryRegion(shared_dir) as region:
        tiles = _tiles(region)
        with open(region.path, "r+b") as raw:
            raw.seek(tiles[1].pixels.shared_memory.offset + 100)
            raw.write(b"\xff")
        error = _status(service, tiles)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "sha256 does not match" in error.details() and tiles[1].tile_id in error.details()
    _serves(service)


def test_a_vanished_region_is_failed_precondition(service: str, shared_dir: Path) -> None:
    region = SharedMemoryRegion(shared_dir)
    tiles = _tiles(region)
    region.close()
    error = _status(service, tiles)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "not visible to this service" in error.details()
    _serves(service)


@pytest.mark.parametrize(("change", "message"), [
    (lambda ref: setattr(ref, "size_bytes", ref.size_bytes - 4), "shared-memory reference names 16380 bytes, expected 16384"),
    (lambda ref: setattr(ref, "offset", ref.offset + 8), "reaches past the end of region"),
    (lambda ref: setattr(ref, "name", "../etc/passwd"), "is not a region's file name"),
    (lambda ref: setattr(ref, "sha256", "abc"), "sha256 must be 64 lower-case hex digits"),
], ids=["wrong-size", "past-the-end", "hostile-name", "malformed-digest"])
def test_a_wrong_size_or_a_malformed_reference_is_invalid_argument(service: str, shared_dir: Path, change, message) -> None:
    with SharedMemoryRegion(shared_dir) as region:
        tiles = _tiles(region)
        change(tiles[-1].pixels.shared_memory)
        error = _status(service, tiles)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and message in error.details(), error.details()
    _serves(service)


def test_a_link_in_the_directory_is_never_followed(service: str, shared_dir: Path) -> None:
    secret = shared_dir.parent / "secret.bin"
    secret.write_bytes(np.ones((1, 64, 64), np.float32).tobytes())
    link = shared_dir / "nightshift-link"
    link.symlink_to(secret)
    try:
        with SharedMemoryRegion(shared_dir) as region:
            tiles = _tiles(region, 1)
            tiles[0].pixels.shared_memory.name = link.name
            error = _status(service, tiles)
    finally:
        link.unlink()
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_a_service_that_cannot_see_the_region_refuses_it_and_the_client_falls_back_inline(elsewhere: str, shared_dir: Path) -> None:
    with SharedMemoryRegion(shared_dir) as region:
        tiles = _tiles(region)
        assert _status(elsewhere, tiles).code() == grpc.StatusCode.FAILED_PRECONDITION
        with TaskClient(elsewhere, timeout_s=20, shared_memory_dir=shared_dir) as client:
            assert client.describe().shared_memory_domain != shared_memory_domain(shared_dir)
            response = client.infer(tiles)
    assert [r.measurements[0].value for r in response.results] == [4096.0, 8192.0, 12288.0]


@pytest.mark.parametrize("co_located", [True, False])
def test_infer_stream_sends_shared_memory_tiles_to_a_service_that_sees_them_and_inline_to_one_that_does_not(
    co_located: bool, service: str, elsewhere: str, shared_dir: Path
) -> None:
    target = service if co_located else elsewhere
    with SharedMemoryRegion(shared_dir) as region:
        batches = [_tiles(region, 2), _tiles(region, 1)]
        with TaskClient(target, timeout_s=20, shared_memory_dir=shared_dir) as client:
            responses = list(client.infer_stream(batches))
    assert [[r.measurements[0].value for r in response.results] for response in responses] == [[4096.0, 8192.0], [4096.0]]
