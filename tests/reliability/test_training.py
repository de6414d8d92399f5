"""Training that obeys its caller, against a real service process (filaments, the quickest to train).

A ``Train`` its client cancels, or whose deadline passes, stops and registers nothing; a second
``Train`` while one runs is refused with RESOURCE_EXHAUSTED, until the first one's training thread
has ended (not merely until its caller went away).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from nightshift.core.client import TaskClient
from nightshift.core.registry import ModelRegistry
from nightshift.orchestration.launcher import LocalNight, RunningService, science_service_commands
from nightshift.v1 import task_service_pb2

pytestmark = pytest.mark.reliability

_LONG = {"epochs": "2000"}  # the tiny preset's 3 epochs take about a second; this trains for many minutes


@pytest.fixture
def filaments(tmp_path) -> Iterator[tuple[RunningService, ModelRegistry]]:
    with LocalNight(tmp_path / "night") as night:
        store = night.start_s3()
        commands, missing = science_service_commands(["filaments"])
        assert not missing, missing
        assert not night.start_services(commands, timeout_s=120)  # registers the shipped model as version 1
        yield night.services["filaments"], ModelRegistry(store, "filaments")


def _request(**overrides: str) -> task_service_pb2.TrainRequest:
    return task_service_pb2.TrainRequest(preset="tiny", seed=5, overrides=overrides)


def _refused_code(call: Iterator[task_service_pb2.TrainResponse]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as refused:
        list(call)
    return refused.value.code(), refused.value.details()


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _assert_goes_quiet(service: RunningService, *, within_s: float = 15.0) -> None:
    """The service stops computing: some 2 s window within ``within_s`` with under 0.5 s of its CPU."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        before = _cpu_s(service.process.pid)
        time.sleep(2.0)
        if _cpu_s(service.process.pid) - before < 0.5:
            return
    raise AssertionError(f"{service.command.name} kept computing {within_s} s after its training was abandoned")


def test_a_cancelled_training_stops_registers_nothing_and_a_concurrent_one_is_refused(filaments) -> None:
    service, registry = filaments
    with TaskClient(service.target, timeout_s=120) as client:
        first = client.train(_request(**_LONG))
        assert next(first).progress.epoch == 1
        code, details = _refused_code(client.train(_request(epochs="1")))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "already in progress" in details
        first.cancel()
        _assert_goes_quiet(service)
        assert [v.version for v in registry.versions()] == ["1"]
        events = list(client.train(_request(epochs="1")))  # the service trains again
    assert events[-1].registered.model.version == "2"
    assert [v.version for v in registry.versions()] == ["1", "2"] and registry.get().version == "2"
    assert '"code": "CANCELLED"' in service.log_path.read_text()


def test_a_training_past_its_deadline_stops_and_registers_nothing(filaments) -> None:
    service, registry = filaments
    with TaskClient(service.target) as client:
        started = time.monotonic()
        code, _ = _refused_code(client.train(_request(**_LONG), timeout_s=4))
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED and time.monotonic() - started < 10
        _assert_goes_quiet(service)
    assert [v.version for v in registry.versions()] == ["1"] and registry.get().version == "1"
