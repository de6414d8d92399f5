"""Security: TLS for gRPC and the object store, keys kept in their prefix, no pickle, bounded requests, no leaked secret.

Already covered elsewhere and not repeated here: the core server's batch and message limits with their
default options (``core/tests/test_server.py``: ``test_too_many_tiles_is_resource_exhausted``,
``test_oversize_message_is_resource_exhausted``) and the registry's refusal of unsafe file names and
suffixes (``core/tests/test_registry.py``).
"""

from __future__ import annotations

import base64
import concurrent.futures
import dataclasses
import io
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import certifi
import grpc
import numpy as np
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from nightshift.core.client import TaskClient
from nightshift.core.errors import FailedPrecondition, InvalidInput, StoreUnavailable
from nightshift.core.registry import ModelRegistry, RegisteredModel, resolve_checkpoint
from nightshift.core.s3server import RcloneS3Server, free_port
from nightshift.core.server import LIVENESS, TASK_SERVICE_NAME, BackgroundServer, ServerOptions
from nightshift.core.store import ObjectStore, StoreConfig, sha256_hex
from nightshift.core.tiles import make_tile
from nightshift.core.tilestats import TileStatisticsModel
from nightshift.orchestration.launcher import LocalNight
from nightshift.orchestration.layout import NightLayout
from nightshift.orchestration.nightly import nightly
from nightshift.orchestration.simulate import simulate_night
from nightshift.v1 import task_service_pb2, tile_pb2

pytestmark = pytest.mark.reliability

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).with_name("data")


def _tile(value: float = 1.0, size: int = 8) -> tile_pb2.ImageTile:
    return make_tile(np.full((1, size, size), value, np.float32), bands=["image"], survey="s", field="f")


# -- TLS ----------------------------------------------------------------------------------------


def test_grpc_over_tls_with_a_self_made_ca(certificates, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NIGHTSHIFT_GRPC_TLS_CERT", str(certificates.cert))
    monkeypatch.setenv("NIGHTSHIFT_GRPC_TLS_KEY", str(certificates.key))
    options = ServerOptions.from_env(port=0)
    assert (options.tls_cert, options.tls_key) == (certificates.cert, certificates.key)

    with BackgroundServer(TileStatisticsModel(), options=options) as server:
        with TaskClient(server.target, timeout_s=10, root_certificates=certificates.ca.read_bytes()) as client:
            assert client.infer([_tile(3.0)]).results[0].measurements[0].value == 3.0
        monkeypatch.setenv("NIGHTSHIFT_GRPC_TLS_CA", str(certificates.ca))  # the environment alone turns TLS on
        with TaskClient(server.target, timeout_s=10) as client:
            assert client.health() == health_pb2.HealthCheckResponse.SERVING
        monkeypatch.delenv("NIGHTSHIFT_GRPC_TLS_CA")
        with TaskClient(server.target, timeout_s=3) as plaintext, pytest.raises(grpc.RpcError) as refused:
            plaintext.describe()
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        with TaskClient(server.target, timeout_s=3, root_certificates=Path(certifi.where()).read_bytes()) as public_roots, \
                pytest.raises(grpc.RpcError) as untrusted:
            public_roots.describe()  # no public CA vouches for the self-made one
        assert untrusted.value.code() == grpc.StatusCode.UNAVAILABLE


SLEEPY_SERVICE = REPO / "core" / "tests" / "sleepy_service.py"


def _sleepy_tile(sleep_s: float) -> tile_pb2.ImageTile:
    return make_tile(np.ones((1, 4, 4), np.float32), bands=["image"], survey="s", field="f", labels={"sleep_s": str(sleep_s)})


def _status(channel: grpc.Channel, service: str) -> str:
    """One health check as the kubelet asks it: a bare channel (a TaskClient's own health checking would
    refuse calls to a NOT_SERVING server before they are sent)."""
    try:
        return health_pb2.HealthCheckResponse.ServingStatus.Name(
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=1).status)
    except grpc.RpcError as error:
        return error.code().name


def test_a_plaintext_health_port_answers_as_the_tls_service_port_through_a_drain_and_serves_nothing_else(
        certificates, tmp_path: Path) -> None:
    """The kubelet's gRPC probes speak plaintext only: with the service port TLS-only they ask the health port."""
    port_file, health_port = tmp_path / "port", free_port()
    process = subprocess.Popen(
        [sys.executable, str(SLEEPY_SERVICE)], stderr=subprocess.DEVNULL,
        env={**os.environ, "NIGHTSHIFT_GRPC_HOST": "127.0.0.1", "NIGHTSHIFT_GRPC_PORT": "0", "NIGHTSHIFT_GRPC_PORT_FILE": str(port_file),
             "NIGHTSHIFT_GRPC_TLS_CERT": str(certificates.cert), "NIGHTSHIFT_GRPC_TLS_KEY": str(certificates.key),
             "NIGHTSHIFT_GRPC_HEALTH_PORT": str(health_port), "NIGHTSHIFT_GRPC_COMPUTE_SLOTS": "2",
             "NIGHTSHIFT_GRPC_DRAIN_NOTICE_S": "1.0", "NIGHTSHIFT_GRPC_GRACE_S": "10"},
    )
    try:
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text()):
            assert process.poll() is None and time.monotonic() < deadline, "the service did not start"
            time.sleep(0.05)
        target, health_target = f"127.0.0.1:{port_file.read_text()}", f"127.0.0.1:{health_port}"
        ca = certificates.ca.read_bytes()
        with TaskClient(target, timeout_s=10, root_certificates=ca) as tls, TaskClient(health_target, timeout_s=5) as probe, \
                grpc.secure_channel(target, grpc.ssl_channel_credentials(ca)) as tls_channel, \
                grpc.insecure_channel(health_target) as health_channel, grpc.insecure_channel(target) as plaintext_channel, \
                concurrent.futures.ThreadPoolExecutor(1) as pool:
            tls.wait_until_serving(timeout_s=30)
            for service in ("", LIVENESS, TASK_SERVICE_NAME, "sleepy", "unknown"):
                assert _status(health_channel, service) == _status(tls_channel, service), service
            assert _status(health_channel, TASK_SERVICE_NAME) == "SERVING"
            assert _status(plaintext_channel, LIVENESS) == "UNAVAILABLE"  # what a probe on the TLS port gets
            for call in (probe.describe, lambda: probe.infer([_sleepy_tile(0.0)]), lambda: list(probe.train(task_service_pb2.TrainRequest()))):
                with pytest.raises(grpc.RpcError) as refused:
                    call()
                assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED

            in_flight = pool.submit(tls.infer, [_sleepy_tile(3.0)])
            time.sleep(0.3)
            process.send_signal(signal.SIGTERM)
            # health port, then service port, then health port again: where the two health-port answers agree,
            # the service port's answer between them must be the same (a transition can fall between two asks)
            samples = []
            while (sample := (_status(health_channel, TASK_SERVICE_NAME), _status(tls_channel, TASK_SERVICE_NAME),
                              _status(health_channel, TASK_SERVICE_NAME)))[2] != "UNAVAILABLE":
                samples.append(sample)
                time.sleep(0.02)
            assert in_flight.result(timeout=15).results  # the call in flight was answered
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    # a check that timed out (DEADLINE_EXCEEDED on a loaded machine) or was refused says nothing about agreement
    both_answering = [(before, service) for before, service, after in samples
                      if before == after and {before, service} <= {"SERVING", "NOT_SERVING"}]
    assert [s for s in samples if s[1] == "NOT_SERVING"], samples  # the drain notice was seen on both ports
    assert all(before == service for before, service in both_answering), samples
    # once the service port refuses new calls the health port still says NOT_SERVING, until the process ends
    refusing = [health for health, service, _ in samples if service == "UNAVAILABLE"]
    assert refusing and set(refusing) == {"NOT_SERVING"}, samples


def test_tls_needs_both_a_certificate_and_a_key(certificates) -> None:
    with pytest.raises(ValueError, match="both a certificate and a key"):
        ServerOptions(tls_cert=certificates.cert)


def test_object_store_over_https_with_a_ca_bundle(certificates, tmp_path: Path) -> None:
    with RcloneS3Server(tmp_path / "s3", tls_cert=certificates.cert, tls_key=certificates.key, tls_ca=certificates.ca) as s3:
        env = s3.config.to_env() | {"NIGHTSHIFT_S3_ENDPOINT": f"https://127.0.0.1:{s3.port}"}
        config = StoreConfig.from_env(env)
        assert config.secure and config.ca_bundle == str(certificates.ca)
        store = ObjectStore(config, retries=0)
        store.ensure_bucket()
        ref = store.put_bytes(store.key("over-tls"), b"encrypted on the wire")
        assert store.get_bytes(ref) == b"encrypted on the wire"

        with pytest.raises(StoreUnavailable, match="SSLError"):  # certifi's roots do not know the self-made CA
            ObjectStore(StoreConfig.from_env(env | {"NIGHTSHIFT_S3_CA_BUNDLE": ""}), retries=0).get_bytes(ref)
        with pytest.raises(FailedPrecondition, match="HTTP request to an HTTPS server"):
            ObjectStore(StoreConfig.from_env(env | {"NIGHTSHIFT_S3_ENDPOINT": f"http://127.0.0.1:{s3.port}"}),
                        retries=0, timeout_s=3).get_bytes(ref)


# -- keys -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_version", ["../../models/bubbles", "/abs", "1/../..", "v\n1", ""])
def test_keys_built_from_a_service_answer_cannot_leave_the_night(store: ObjectStore, model_version: str) -> None:
    layout = NightLayout(store, "2026-02-01")
    with pytest.raises(InvalidInput, match="key part"):
        layout.infer_record("tilestats", "tilestats-robust", model_version, "input", ["tile"])


@pytest.mark.parametrize("key", ["../../etc/passwd", "/etc/passwd", "a/./b", "a//b", "a\x00b"])
def test_a_tile_reference_that_escapes_its_prefix_is_invalid_argument(store: ObjectStore, key: str) -> None:
    tile = _tile()
    tile.pixels.ClearField("inline_data")
    tile.pixels.object_ref.CopyFrom(tile_pb2.ObjectRef(bucket=store.bucket, key=f"{store.key()}/{key}", size_bytes=256,
                                                       sha256="0" * 64))
    with BackgroundServer(TileStatisticsModel(), store=store) as server, TaskClient(server.target, timeout_s=10) as client:
        with pytest.raises(grpc.RpcError) as refused:
            client.infer([tile])
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "object key" in refused.value.details()
        assert client.health() == health_pb2.HealthCheckResponse.SERVING


# -- checkpoints without pickle ----------------------------------------------------------------


class _Payload:
    """Unpickling this runs ``open(marker, "w")``: the file exists only if a pickle was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204 - the pickle protocol
        return open, (str(self.marker), "w")


def _malicious_files(marker: Path) -> dict[str, bytes]:
    """A pickle payload dressed as each checkpoint format."""
    payload = pickle.dumps(_Payload(marker), protocol=2)
    torch_like = io.BytesIO()
    with zipfile.ZipFile(torch_like, "w") as archive:  # torch's archive layout with a hostile data.pkl
        archive.writestr("archive/data.pkl", payload)
        archive.writestr("archive/version", "3\n")
    npz_with_objects = io.BytesIO()
    np.savez(npz_with_objects, w=np.array([_Payload(marker)], dtype=object))
    keras_like = io.BytesIO()
    with zipfile.ZipFile(keras_like, "w") as archive:
        archive.writestr("model.pkl", payload)
    return {
        "bare.pt": payload,
        "archive.pt": torch_like.getvalue(),
        "objects.npz": npz_with_objects.getvalue(),
        "pickle.safetensors": payload,
        "pickle.keras": keras_like.getvalue(),
        "pickle.json": payload,
    }


def test_a_planted_pickle_is_refused_and_never_executed(store: ObjectStore, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    registry = ModelRegistry(store, "bubbles")
    for file_name, blob in {**_malicious_files(marker), "model.pkl": pickle.dumps(_Payload(marker)),
                            "weights.h5": pickle.dumps(_Payload(marker))}.items():
        with pytest.raises(InvalidInput, match=f"model file '{file_name}'"):
            registry.register({file_name: blob}, name="evil", metrics={}, config={}, data_seed=0)
    assert registry.versions() == []

    # An attacker with write access to the store plants a complete version, metadata and all.
    for version, (file_name, blob) in enumerate(_malicious_files(marker).items(), start=1):
        planted = RegisteredModel(task="bubbles", name="evil", version=str(version), created="2026-01-01T00:00:00+00:00",
                                  metrics={}, config={}, data_seed=0, code_version="x",
                                  files={file_name: {"sha256": sha256_hex(blob), "size_bytes": len(blob)}}, digest="0")
        store.put_bytes(store.key("models", "bubbles", str(version), file_name), blob)
        store.put_bytes(store.key("models", "bubbles", str(version), "metadata.json"), json.dumps(dataclasses.asdict(planted)).encode())
        with pytest.raises(InvalidInput, match=f"model file '{file_name}'"):
            registry.fetch(registry.get(str(version)), tmp_path / "cache")
        assert not (tmp_path / "cache" / "bubbles" / str(version) / file_name).exists()
    assert not marker.exists()

    genuine = (DATA / "state_dict.pt").read_bytes()  # torch.save(Conv2d + BatchNorm2d state dict), made with torch 2.14
    model = registry.register({"model.pt": genuine}, name="good", metrics={}, config={}, data_seed=0)
    assert (registry.fetch(model, tmp_path / "cache") / "model.pt").read_bytes() == genuine


def test_a_service_never_serves_a_planted_checkpoint(store: ObjectStore, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    bundled = tmp_path / "bundle" / "toy.safetensors"
    bundled.parent.mkdir()
    header = json.dumps({"__metadata__": {"model": "toy"}}).encode()
    bundled.write_bytes(len(header).to_bytes(8, "little") + header)
    bundled.with_suffix(".json").write_text(json.dumps({"name": "toy", "metrics": {}, "config": {}, "data_seed": 0}))
    resolve_checkpoint("toy", bundled, store=store, cache_dir=tmp_path / "cache")  # registers version 1
    payload = _malicious_files(marker)["pickle.safetensors"]
    planted = {"task": "toy", "name": "toy", "version": "2", "created": "2026-01-01T00:00:00+00:00", "metrics": {}, "config": {},
               "data_seed": 0, "code_version": "x", "digest": "0",
               "files": {"toy.safetensors": {"sha256": sha256_hex(payload), "size_bytes": len(payload)}}}
    store.put_bytes(store.key("models", "toy", "2", "toy.safetensors"), payload)
    store.put_bytes(store.key("models", "toy", "2", "metadata.json"), json.dumps(planted).encode())
    store.put_bytes(store.key("models", "toy", "LATEST"), b"2")

    with pytest.raises(InvalidInput, match="not a safetensors file"):
        resolve_checkpoint("toy", bundled, store=store, cache_dir=tmp_path / "cache")
    assert not marker.exists()


# -- bounded requests -----------------------------------------------------------------------------


def test_request_and_batch_sizes_are_bounded_by_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NIGHTSHIFT_GRPC_MAX_MESSAGE_BYTES", str(256 * 1024))
    monkeypatch.setenv("NIGHTSHIFT_MAX_BATCH_TILES", "7")  # the operator's cap, below the model's own
    model = TileStatisticsModel()
    with BackgroundServer(model, options=ServerOptions.from_env(port=0)) as server, TaskClient(server.target, timeout_s=10) as client:
        with pytest.raises(grpc.RpcError) as too_big:
            client.infer([_tile(size=512)])  # 1 MiB of pixels inline
        assert too_big.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        limit = client.describe().input.max_batch_tiles
        assert limit == 7 < model.spec.max_batch_tiles
        with pytest.raises(grpc.RpcError) as too_many:
            client.infer([_tile(size=1)] * (limit + 1))
        assert too_many.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and f"at most {limit}" in too_many.value.details()
        assert len(client.infer([_tile(size=1)] * limit).results) == limit


# -- no credential in objects, logs or manifests --------------------------------------------------


def _kustomize_with_credentials(destination: Path, credentials: str) -> dict[str, list[dict]]:
    """Each overlay as ``kubectl kustomize`` renders it, from a copy of deploy/k8s whose secret files hold ``credentials``."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the manifests are rendered by kubectl kustomize")
    k8s = destination / "k8s"
    shutil.copytree(REPO / "deploy" / "k8s", k8s)
    for example in (k8s / "base" / "secrets").glob("*.env.example"):
        example.with_suffix("").write_text(credentials)
    rendered = {}
    for overlay in sorted((k8s / "overlays").iterdir()):
        result = subprocess.run([kubectl, "kustomize", str(overlay)], capture_output=True, text=True, timeout=120, check=True)
        rendered[overlay.name] = [o for o in yaml.safe_load_all(result.stdout) if o]
    return rendered


@pytest.mark.usefixtures("prefect_harness")
def test_no_credential_in_stored_objects_service_logs_flow_logs_or_manifests(
    local_night: LocalNight, config_of, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert local_night.s3 is not None
    secret = local_night.s3.secret_key
    forms = {secret, base64.b64encode(secret.encode()).decode()}
    store = local_night.store
    simulate_night(store, "2026-03-01", seed=3)
    with caplog.at_level("DEBUG"):
        summary = nightly(config=config_of(local_night), night="2026-03-01")
    assert summary.complete and summary.tasks[0].tiles > 0

    keys = list(store.list_keys(""))
    assert len(keys) > 20  # raw files, shards, records, catalogues, manifest, report
    leaks = [key for key in keys if any(f.encode() in store.get_bytes(key) for f in forms)]
    logs = sorted((local_night.work_dir / "logs").glob("*.log"))
    assert len(logs) == 3 and all(path.stat().st_size > 0 for path in logs)
    leaks += [str(path) for path in logs if any(f in path.read_text(errors="replace") for f in forms)]
    captured = capfd.readouterr()
    leaks += [name for name, text in (("flow log", caplog.text), ("stdout", captured.out), ("stderr", captured.err))
              if any(f in text for f in forms)]
    assert leaks == []

    # The manifests: the secret may only be in the Secret objects it is meant for.
    credentials = f"NIGHTSHIFT_S3_ACCESS_KEY=nightshift\nNIGHTSHIFT_S3_SECRET_KEY={secret}\nPOSTGRES_PASSWORD={secret}\n"
    for overlay, objects in _kustomize_with_credentials(tmp_path, credentials).items():
        holding = {(o["kind"], o["metadata"]["name"]) for o in objects if any(f in json.dumps(o) for f in forms)}
        assert holding and {kind for kind, _ in holding} == {"Secret"}, (overlay, holding)
