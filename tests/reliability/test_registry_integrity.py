"""Registry integrity: concurrent registrations from separate processes, damaged metadata, non-finite checkpoints.

Each test runs against the real local S3 server; the concurrent registrations are separate Python
processes released at the same moment, as two trainings finishing together would be, and one test
restarts a real service process (filaments, the quickest to start) on a damaged registry.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nightshift.core.client import TaskClient
from nightshift.core.errors import InvalidInput
from nightshift.core.registry import ModelRegistry, RegisteredModel, resolve_checkpoint
from nightshift.core.store import ObjectStore, sha256_hex
from nightshift.orchestration.launcher import LocalNight, science_service_commands

pytestmark = pytest.mark.reliability

RACERS = 4
ROUNDS = 3
_REGISTRANT = r"""
import json, sys, time
from pathlib import Path
from nightshift.core.registry import ModelRegistry
from nightshift.core.store import ObjectStore

weights, go = Path(sys.argv[1]), Path(sys.argv[2])
registry = ModelRegistry(ObjectStore.from_env(), "racer")
print("ready", flush=True)
while not go.exists():
    time.sleep(0.001)
model = registry.register({"model.safetensors": weights}, name="racer", metrics={"value": float(weights.stem)},
                          config={"weights": weights.name}, data_seed=0)
print(json.dumps({"version": model.version, "digest": model.digest}), flush=True)
"""


def safetensors(values: np.ndarray, name: str = "weight") -> bytes:
    """A safetensors file holding one float32 tensor."""
    data = np.ascontiguousarray(values, dtype="<f4").tobytes()
    header = json.dumps({name: {"dtype": "F32", "shape": list(values.shape), "data_offsets": [0, len(data)]}}).encode()
    return struct.pack("<Q", len(header)) + header + data


def _register(registry: ModelRegistry, blob: bytes, **kwargs: object) -> RegisteredModel:
    return registry.register({"model.safetensors": blob}, name="toy", metrics={}, config={}, data_seed=0, **kwargs)  # type: ignore[arg-type]


def _race(store: ObjectStore, directory: Path, first_value: int) -> list[tuple[bytes, dict[str, str]]]:
    """Register ``RACERS`` different checkpoints from as many processes at once; each one's weights and answer."""
    env = {**os.environ, **store.config.to_env()}
    go = directory / f"go-{first_value}"
    racers = []
    for value in range(first_value, first_value + RACERS):
        weights = directory / f"{value}.safetensors"
        weights.write_bytes(safetensors(np.full(8, value, np.float32)))
        racers.append((weights, subprocess.Popen([sys.executable, "-c", _REGISTRANT, str(weights), str(go)], env=env,
                                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
    for _, process in racers:
        assert process.stdout is not None and process.stdout.readline().strip() == "ready", process.stderr
    go.touch()  # every racer is waiting on this file: they register within a millisecond of each other
    answers = []
    for weights, process in racers:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        answers.append((weights.read_bytes(), json.loads(out.strip().splitlines()[-1])))
    return answers


def test_concurrent_registrations_from_separate_processes_get_distinct_versions_each_with_its_own_weights(
    store: ObjectStore, tmp_path: Path
) -> None:
    answers = [answer for round_ in range(ROUNDS) for answer in _race(store, tmp_path, round_ * RACERS)]

    versions = [answer["version"] for _, answer in answers]
    assert len(set(versions)) == len(versions) == RACERS * ROUNDS, f"versions handed out twice: {sorted(versions, key=int)}"
    registry = ModelRegistry(store, "racer")
    assert sorted(m.version for m in registry.versions()) == sorted(versions)
    for weights, answer in answers:
        model = registry.get(answer["version"])
        assert model.digest == answer["digest"], f"version {model.version}: metadata of another registration"
        assert model.files["model.safetensors"]["sha256"] == sha256_hex(weights)
        fetched = registry.fetch(model, tmp_path / "cache") / "model.safetensors"
        assert fetched.read_bytes() == weights, f"version {model.version}: weights of another registration"
        assert model.metrics["value"] == np.frombuffer(weights[-32:], "<f4")[0]
    assert not [k for k in store.list_keys(store.key("models", "racer") + "/") if "/.claim-" in k]  # claims withdrawn


def test_unreadable_metadata_of_one_version_is_skipped_with_a_warning(
    store: ObjectStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bundled = tmp_path / "bundle" / "toy.safetensors"
    bundled.parent.mkdir()
    bundled.write_bytes(safetensors(np.ones(4, np.float32)))
    bundled.with_suffix(".json").write_text(json.dumps({"name": "toy", "metrics": {}, "config": {}, "data_seed": 0}))
    registry = ModelRegistry(store, "toy")
    first = resolve_checkpoint("toy", bundled, store=store, cache_dir=tmp_path / "cache")  # registers version 1
    second = _register(registry, safetensors(np.full(4, 2.0, np.float32)))
    store.put_bytes(store.key("models", "toy", "1", "metadata.json"), b'{"task": "toy", "version": "1", "trunc')

    with caplog.at_level(logging.WARNING, logger="nightshift.core.registry"):
        assert [m.version for m in registry.versions()] == ["2"]
        served = resolve_checkpoint("toy", bundled, store=store, cache_dir=tmp_path / "cache")
    assert first.ref.version == "1" and served.ref.version == second.version == "2"
    assert "metadata of model version 1 is unreadable" in caplog.text
    # The shipped model, its record damaged, is registered afresh (not LATEST): the registry holds it readable again.
    assert [m.version for m in registry.versions()] == ["2", "3"] and registry.get().version == "2"

    # LATEST itself on a damaged version: the newest readable one is served, with a warning saying so.
    store.put_bytes(store.key("models", "toy", "LATEST"), b"1")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="nightshift.core.registry"):
        served = resolve_checkpoint("toy", bundled, store=store, cache_dir=tmp_path / "cache")
    assert served.ref.version == "3" and served.weights.read_bytes() == bundled.read_bytes()
    assert "serving the newest readable version 3" in caplog.text
    for damage in (b"\xff\xfe not utf-8", b"[1, 2]", json.dumps({"task": "toy", "version": "9"}).encode(),
                   json.dumps({**json.loads(second.to_proto().metadata_json), "version": "7"}).encode()):
        store.put_bytes(store.key("models", "toy", "2", "metadata.json"), damage)
        assert [m.version for m in registry.versions()] == ["3"]
    # The damaged numbers stay taken: a new registration never reuses a number that holds objects.
    assert _register(registry, safetensors(np.full(4, 4.0, np.float32))).version == "4"


def test_a_non_finite_checkpoint_is_refused_and_latest_does_not_move(store: ObjectStore, tmp_path: Path) -> None:
    registry = ModelRegistry(store, "toy")
    good = _register(registry, safetensors(np.ones((2, 3), np.float32)))

    for values in (np.full((2, 3), np.nan, np.float32), np.array([1.0, np.inf, 0.0], np.float32)):
        with pytest.raises(InvalidInput, match=r"model file 'model.safetensors': \d+ of \d+ values of weight 'weight' are NaN or infinite"):
            _register(registry, safetensors(values))
    assert [m.version for m in registry.versions()] == ["1"] and registry.get().version == good.version

    # A NaN version written straight into the store (by an older release, or an attacker) is neither
    # promoted nor served.
    nan = safetensors(np.full(6, np.nan, np.float32))
    planted = {"task": "toy", "name": "toy", "version": "2", "created": "2026-01-01T00:00:00+00:00", "metrics": {},
               "config": {}, "data_seed": 0, "code_version": "x", "digest": "0",
               "files": {"toy.safetensors": {"sha256": sha256_hex(nan), "size_bytes": len(nan)}}}
    store.put_bytes(store.key("models", "toy", "2", "toy.safetensors"), nan)
    store.put_bytes(store.key("models", "toy", "2", "metadata.json"), json.dumps(planted).encode())
    with pytest.raises(InvalidInput, match="NaN or infinite"):
        registry.promote("2")
    assert registry.get().version == "1"

    bundled = tmp_path / "bundle" / "toy.safetensors"
    bundled.parent.mkdir()
    bundled.write_bytes(safetensors(np.ones(4, np.float32)))
    bundled.with_suffix(".json").write_text(json.dumps({"name": "toy", "metrics": {}, "config": {}, "data_seed": 0}))
    store.put_bytes(store.key("models", "toy", "LATEST"), b"2")
    with pytest.raises(InvalidInput, match="NaN or infinite"):
        resolve_checkpoint("toy", bundled, store=store, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache" / "toy" / "2" / "toy.safetensors").exists()


def test_a_service_process_starts_with_a_damaged_version_in_its_registry_and_never_serves_a_nan_one(tmp_path: Path) -> None:
    with LocalNight(tmp_path / "night") as night:
        store = night.start_s3()
        commands, missing = science_service_commands(["filaments"])
        assert not missing, missing
        assert not night.start_services(commands, timeout_s=120)  # registers the shipped model as version 1
        service = night.kill("filaments")
        registry = ModelRegistry(store, "filaments")
        shipped = registry.get("1")
        weights = next(iter(shipped.files))

        # An unused version 2 whose metadata is damaged: the service starts and serves version 1.
        store.put_bytes(store.key("models", "filaments", "2", weights), b"partial")
        store.put_bytes(store.key("models", "filaments", "2", "metadata.json"), b'{"task": "filaments", "vers')
        service = night.restart(service)
        with TaskClient(service.target, timeout_s=30) as client:
            described = client.describe()
        assert described.serving_model.version == "1" and [m.model.version for m in described.models] == ["1"]
        assert "metadata of model version 2 is unreadable" in service.log_tail()

        # LATEST moved (by hand) onto a NaN copy of the shipped weights: the service refuses to start rather than serve it.
        blob = store.get_bytes(store.key("models", "filaments", "1", weights))
        header_bytes = struct.unpack("<Q", blob[:8])[0]
        nan = bytearray(blob)
        nan[8 + header_bytes :] = np.full((len(blob) - 8 - header_bytes) // 4, np.nan, "<f4").tobytes()
        planted = {**json.loads(shipped.to_proto().metadata_json), "version": "3",
                   "files": {weights: {"sha256": sha256_hex(bytes(nan)), "size_bytes": len(nan)}}}
        store.put_bytes(store.key("models", "filaments", "3", weights), bytes(nan))
        store.put_bytes(store.key("models", "filaments", "3", "metadata.json"), json.dumps(planted).encode())
        store.put_bytes(store.key("models", "filaments", "LATEST"), b"3")
        night.kill("filaments")
        with pytest.raises(RuntimeError, match="did not restart") as refused:
            night.restart(service, timeout_s=60)
        assert "NaN or infinite" in str(refused.value)


def _npz(**arrays: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _linear_smoke(model: RegisteredModel, directory: Path) -> np.ndarray:
    """A model's whole life in miniature: load ``weights.npz`` (a 2-layer tanh network), run it on a fixed input."""
    with np.load(directory / "weights.npz", allow_pickle=False) as weights:
        first, second = weights["first"], weights["second"]  # a missing tensor fails the load, as a wrong checkpoint would
    fixed = np.linspace(-1.0, 1.0, first.shape[1])
    with np.errstate(over="ignore", invalid="ignore"):
        return second @ np.tanh(first @ fixed)


def test_a_version_failing_its_smoke_inference_never_becomes_latest(store: ObjectStore) -> None:
    """Finite weights are not enough: a version whose model does not load, or whose output on a fixed input is not finite,
    stays registered but is never ``LATEST``, by ``register(set_latest=True)`` nor by ``promote``."""
    rng = np.random.default_rng(3)
    good = {"first": rng.normal(size=(4, 8)).astype(np.float32), "second": rng.normal(size=(2, 4)).astype(np.float32)}
    registry = ModelRegistry(store, "smoke-test", smoke=_linear_smoke)

    def register(arrays: dict[str, np.ndarray], *, set_latest: bool = True) -> RegisteredModel:
        return registry.register({"weights.npz": _npz(**arrays)}, name="linear", metrics={}, config={},
                                 data_seed=0, set_latest=set_latest)

    assert register(good).version == "1" and registry.get().version == "1"
    with pytest.raises(InvalidInput, match="version 2: its smoke inference failed .KeyError"):
        register({"first": good["first"]})  # the second layer is missing: the model cannot load
    with pytest.raises(InvalidInput, match="version 3: its smoke inference gave 2 NaN or infinite values"):
        # finite weights (the largest float64s), whose output on the fixed input overflows to infinity
        register({**good, "second": np.full((2, 4), np.finfo(np.float64).max)})
    assert [v.version for v in registry.versions()] == ["1", "2", "3"] and registry.get().version == "1"
    for version in ("2", "3"):
        with pytest.raises(InvalidInput, match="LATEST not moved"):
            registry.promote(version)
        assert registry.get().version == "1"
    assert register({**good, "second": good["second"] * 2}, set_latest=False).version == "4"
    assert registry.promote("4").version == "4" and registry.get().version == "4"
    assert ModelRegistry(store, "smoke-test").promote("2").version == "2"  # without a smoke check only the weights are checked
