"""Who may call: bearer tokens and roles against real service processes, and references kept in the service's bucket.

The issue's attacks: an anonymous ``Train`` on filaments registered a version and moved ``LATEST``;
anyone could write into the store through ``IngestFits``; an ``ObjectRef`` naming another bucket was
read with the service's own credentials, and the answer told whether the key existed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2

from nightshift.core.auth import AUTH_SECRET_ENV, issue_token, make_secret
from nightshift.core.client import TaskClient, open_channel
from nightshift.core.registry import ModelRegistry
from nightshift.core.server import BackgroundServer
from nightshift.core.store import ObjectStore
from nightshift.core.tiles import make_tile
from nightshift.core.tilestats import TileStatisticsModel
from nightshift.orchestration.launcher import LocalNight, ingest_command, science_service_commands
from nightshift.v1 import ingest_service_pb2, ingest_service_pb2_grpc, task_service_pb2, tile_pb2

pytestmark = pytest.mark.reliability

SECRET = make_secret()


@pytest.fixture
def night(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalNight]:
    """Filaments and ingest as processes that share the deployment's signing secret."""
    monkeypatch.setenv(AUTH_SECRET_ENV, SECRET)
    with LocalNight(tmp_path / "night") as running:
        running.start_s3()
        commands, missing = science_service_commands(["filaments"])
        assert not missing, missing
        assert not running.start_services([*commands, ingest_command()], timeout_s=120)
        yield running


def _token(*roles: str, secret: str = SECRET, lifetime_s: float = 600) -> str:
    return issue_token(secret, subject=f"test-{'-'.join(roles)}", roles=roles, lifetime_s=lifetime_s)


def _refusal(call) -> tuple[grpc.StatusCode, str]:  # noqa: ANN001 - a callable making one gRPC call
    with pytest.raises(grpc.RpcError) as refused:
        call()
    return refused.value.code(), refused.value.details()


def _tile(pixels: np.ndarray) -> tile_pb2.ImageTile:
    return make_tile(pixels, bands=["nh2"], survey="hi-gal", field="auth")


def test_train_needs_an_admin_token_and_anonymous_or_forged_callers_are_unauthenticated(night: LocalNight) -> None:
    service = night.services["filaments"]
    registry = ModelRegistry(night.store, "filaments")
    request = task_service_pb2.TrainRequest(preset="tiny", seed=1, overrides={"epochs": "1"})
    tile = _tile(np.random.default_rng(0).normal(1e21, 1e20, (1, 256, 256)).astype(np.float32))
    expired = _token("admin", lifetime_s=-1)
    forged = _token("admin", secret=make_secret())

    with TaskClient(service.target, timeout_s=60) as anonymous:
        assert anonymous.health() == health_pb2.HealthCheckResponse.SERVING  # probes need no token
        code, details = _refusal(lambda: list(anonymous.train(request)))
        assert code == grpc.StatusCode.UNAUTHENTICATED and "no credentials" in details
        assert _refusal(lambda: anonymous.infer([tile]))[0] == grpc.StatusCode.UNAUTHENTICATED
    for token, reason in ((expired, "expired"), (forged, "not signed by this deployment"), ("not-a-token", "malformed")):
        with TaskClient(service.target, timeout_s=60, token=token) as client:
            code, details = _refusal(lambda: list(client.train(request)))
            assert code == grpc.StatusCode.UNAUTHENTICATED and reason in details, (code, details)
    with TaskClient(service.target, timeout_s=60, token=_token("infer", "ingest")) as flow:
        assert len(flow.infer([tile]).results) == 1
        code, details = _refusal(lambda: list(flow.train(request)))
        assert code == grpc.StatusCode.PERMISSION_DENIED and "needs the role 'admin'" in details
    assert [v.version for v in registry.versions()] == ["1"] and registry.get().version == "1"

    with TaskClient(service.target, timeout_s=120, token=_token("admin")) as admin:
        assert list(admin.train(request))[-1].registered.model.version == "2"
    assert registry.get().version == "2"
    assert '"caller": "test-admin"' in service.log_path.read_text()


def test_ingest_writes_need_the_ingest_role(night: LocalNight) -> None:
    target = night.services["ingest"].target
    write = ingest_service_pb2.IngestFitsRequest(run_id="auth", survey="s", field="f")
    for roles, code in ((("infer",), grpc.StatusCode.PERMISSION_DENIED), ((), grpc.StatusCode.UNAUTHENTICATED)):
        with open_channel(target, token=_token(*roles) if roles else None) as channel:
            stub = ingest_service_pb2_grpc.IngestServiceStub(channel)
            assert _refusal(lambda: list(stub.IngestFits(write, timeout=30)))[0] == code
    with open_channel(target, token=_token("infer")) as channel:
        listed = ingest_service_pb2_grpc.IngestServiceStub(channel).ListTiles(
            ingest_service_pb2.ListTilesRequest(run_id="none"), timeout=30)
        assert not listed.tiles  # reading is the flow's role
    with open_channel(target, token=_token("ingest")) as channel:
        code, details = _refusal(lambda: list(ingest_service_pb2_grpc.IngestServiceStub(channel).IngestFits(write, timeout=30)))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, details  # admitted: the request itself is incomplete


def test_a_reference_outside_the_services_bucket_and_prefix_is_refused_alike_whether_or_not_it_exists(
    store: ObjectStore,
) -> None:
    pixels = np.ones((1, 8, 8), np.float32)
    secret_bucket = ObjectStore(dataclasses.replace(store.config, bucket="secret", prefix=""))
    secret_bucket.ensure_bucket()
    stored = secret_bucket.put_bytes("payroll.bin", pixels.tobytes())
    other_prefix = ObjectStore(dataclasses.replace(store.config, prefix="another-deployment"))
    elsewhere = other_prefix.put_bytes(other_prefix.key("tile.bin"), pixels.tobytes())
    references = {
        "another bucket, existing key": stored,
        "another bucket, missing key": tile_pb2.ObjectRef(bucket="secret", key="missing.bin", size_bytes=256, sha256="0" * 64),
        "another prefix, existing key": elsewhere,
    }
    answers = {}
    with BackgroundServer(TileStatisticsModel(bands=("nh2",)), store=store) as server, \
            TaskClient(server.target, timeout_s=10) as client:
        for what, ref in references.items():
            tile = _tile(pixels)
            tile.pixels.ClearField("inline_data")
            tile.pixels.object_ref.CopyFrom(ref)
            answers[what] = _refusal(lambda: client.infer([tile]))
        assert client.health() == health_pb2.HealthCheckResponse.SERVING
    assert {code for code, _ in answers.values()} == {grpc.StatusCode.INVALID_ARGUMENT}, answers
    bucket_answers = {details for what, (_, details) in answers.items() if "bucket" in what}
    assert len(bucket_answers) == 1 and "payroll" not in bucket_answers.pop()  # one answer, the key never echoed
    assert "outside this deployment's prefix" in answers["another prefix, existing key"][1]
