"""Who may call: bearer tokens and roles against real service processes, and references kept in the service's bucket.

The issue's attacks: an anonymous ``Train`` on filaments registered a version and moved ``LATEST``;
anyone could write into the store through ``IngestFits``; an ``ObjectRef`` naming another bucket was
read with the service's own credentials, and the answer told whether the key existed; authentication was
off unless a secret was set, so the embedded night (``nightshift night``) took anonymous calls.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2

from nightshift.core.auth import AUTH_SECRET_ENV, auth_mode, issue_token, make_secret
from nightshift.core.client import TaskClient, open_channel
from nightshift.core.registry import ModelRegistry
from nightshift.core.server import BackgroundServer, ServerOptions
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


def _listening_port(log: Path) -> int | None:
    """The gRPC port a service's JSON log says it listens on, once it does."""
    for line in log.read_text(errors="replace").splitlines() if log.exists() else ():
        if line.startswith("{") and '"listening"' in line:
            return int(json.loads(line)["port"])
    return None


def _command_lines() -> list[bytes]:
    lines = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            lines.append(cmdline.read_bytes())
        except OSError:  # the process ended
            continue
    return lines


@pytest.mark.skipif(not (Path(sys.executable).parent / "nightshift-filaments").exists(), reason="nightshift-filaments is not installed")
def test_the_embedded_night_authenticates_without_set_up_and_anonymous_callers_of_its_services_are_refused(
    tmp_path: Path,
) -> None:
    """``nightshift night`` with no secret or token in its environment: its own secret (0600, never on a command
    line), anonymous calls to its ingest and science services UNAUTHENTICATED while it runs, the night complete."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("NIGHTSHIFT_AUTH")}
    env["PREFECT_LOGGING_LEVEL"] = "WARNING"
    work_dir = tmp_path / "night"
    night = subprocess.Popen([str(Path(sys.executable).parent / "nightshift"), "night", "--tasks", "filaments",
                              "--work-dir", str(work_dir)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             stdin=subprocess.DEVNULL)
    refused: dict[str, tuple[grpc.StatusCode, str]] = {}
    try:
        deadline = time.monotonic() + 300
        while len(refused) < 2 and night.poll() is None and time.monotonic() < deadline:
            for name in ("ingest", "filaments"):
                port = _listening_port(work_dir / "logs" / f"{name}.log")
                if name in refused or port is None:
                    continue
                target = f"127.0.0.1:{port}"
                with TaskClient(target, timeout_s=30) as anonymous:
                    anonymous.wait_until_serving(timeout_s=240)  # health needs no token
                    if name == "filaments":
                        refused[name] = _refusal(anonymous.describe)
                if name == "ingest":
                    with open_channel(target) as channel:
                        stub = ingest_service_pb2_grpc.IngestServiceStub(channel)
                        refused[name] = _refusal(lambda: stub.ListTiles(ingest_service_pb2.ListTilesRequest(run_id="x"), timeout=30))
            time.sleep(0.2)
        secret = (work_dir / "auth" / "secret").read_bytes()
        assert (work_dir / "auth" / "secret").stat().st_mode & 0o777 == 0o600
        assert (work_dir / "auth").stat().st_mode & 0o777 == 0o700
        assert len(secret) >= 32 and not any(secret in line for line in _command_lines())
        stdout, stderr = night.communicate(timeout=600)
    finally:
        if night.poll() is None:
            night.kill()
            night.wait()
    assert night.returncode == 0, stderr.decode()[-3000:]
    assert {name: code for name, (code, _) in refused.items()} == {
        "ingest": grpc.StatusCode.UNAUTHENTICATED, "filaments": grpc.StatusCode.UNAUTHENTICATED}, refused
    assert all("no credentials" in details for _, details in refused.values())
    line = json.loads(stdout.decode().strip().splitlines()[-1])
    assert line["complete"] is True and line["tasks"]["filaments"]["infer_calls"] > 0, line
    callers = (work_dir / "logs" / "filaments.log").read_text() + (work_dir / "logs" / "ingest.log").read_text()
    assert '"caller": "nightly-flow-infer"' in callers and '"caller": "nightly-flow-ingest"' in callers
    assert '"caller": "nightly-flow-admin"' not in callers  # the night never holds an admin token


def test_a_service_without_a_secret_refuses_to_listen_beyond_loopback_unless_told_anonymous_callers_are_meant() -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith("NIGHTSHIFT_AUTH")}
    # a store it never reaches: it must stop before serving anything
    env.update(NIGHTSHIFT_S3_ENDPOINT="http://127.0.0.1:9", NIGHTSHIFT_S3_ACCESS_KEY="k", NIGHTSHIFT_S3_SECRET_KEY="s")
    command = [sys.executable, "-m", "nightshift.orchestration.cli", "serve-tilestats", "--bands", "nh2"]
    everywhere = {**env, "NIGHTSHIFT_GRPC_HOST": "0.0.0.0", "NIGHTSHIFT_GRPC_PORT": "0"}
    done = subprocess.run(command, env=everywhere, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 2 and "refusing to serve 0.0.0.0:0 without authentication" in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    required = {**env, "NIGHTSHIFT_GRPC_PORT": "0", "NIGHTSHIFT_AUTH": "on"}
    done = subprocess.run(command, env=required, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 2 and "NIGHTSHIFT_AUTH=on but no secret" in done.stderr, done.stderr[-2000:]

    assert ServerOptions(host="0.0.0.0", auth_mode="off").check_authentication().startswith("AUTHENTICATION OFF")
    assert ServerOptions(host="127.0.0.1").check_authentication().startswith("AUTHENTICATION OFF")  # served, loudly
    assert ServerOptions(host="0.0.0.0", auth_secret=SECRET.encode(), auth_mode="on").check_authentication() == ""
    with pytest.raises(ValueError, match="expected 'on' or 'off'"):
        auth_mode({"NIGHTSHIFT_AUTH": "maybe"})
