"""Model registry: versions, LATEST, idempotent registration, safe formats, verified fetch."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from nightshift.core.errors import FailedPrecondition, InvalidInput, NotFound, StoreUnavailable
from nightshift.core.registry import ModelRegistry, RegisteredModel, bundled_weights, resolve_checkpoint
from nightshift.core.store import ObjectStore, sha256_hex



def safetensors(tag: str) -> bytes:
    """A valid safetensors file holding no tensor, told apart by a metadata tag."""
    header = json.dumps({"__metadata__": {"tag": tag}}).encode()
    return struct.pack("<Q", len(header)) + header


def keras_archive(tag: str) -> bytes:
    """A zip laid out as a native Keras archive (config.json inside)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("config.json", json.dumps({"tag": tag}))
    return buffer.getvalue()


def npz(value: int) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, w=np.array([value]))
    return buffer.getvalue()


WEIGHTS = {"model.safetensors": safetensors("weights v1"), "config.json": b'{"layers": 3}'}
CONFIG = {"lr": 0.001, "epochs": 5, "augment": ["flip"]}


@pytest.fixture
def registry(store: ObjectStore) -> ModelRegistry:
    return ModelRegistry(store, "bubbles")


def register(registry: ModelRegistry, files: dict[str, bytes | Path] = WEIGHTS, **kwargs: object) -> RegisteredModel:
    fields = {"name": "bubbles-ssd", "metrics": {"map50": 0.5}, "config": CONFIG, "data_seed": 7} | kwargs
    return registry.register(files, **fields)  # type: ignore[arg-type]


def test_register_records_files_and_provenance(registry: ModelRegistry) -> None:
    model = register(registry, metrics={"map50": 1, "recall": 0.25})

    assert (model.task, model.name, model.version) == ("bubbles", "bubbles-ssd", "1")
    assert model.metrics == {"map50": 1.0, "recall": 0.25}
    assert (model.config, model.data_seed) == (CONFIG, 7)
    assert model.code_version
    assert model.files == {name: {"sha256": sha256_hex(b), "size_bytes": len(b)} for name, b in WEIGHTS.items()}
    assert dt.datetime.fromisoformat(model.created).tzinfo == dt.UTC
    store = registry.store
    assert store.get_bytes(store.key("models", "bubbles", "1", "model.safetensors")) == safetensors("weights v1")
    assert json.loads(store.get_bytes(store.key("models", "bubbles", "1", "metadata.json"))) == dataclasses.asdict(model)
    assert store.get_bytes(store.key("models", "bubbles", "LATEST")) == b"1"


def test_registering_the_same_files_returns_the_existing_version(registry: ModelRegistry) -> None:
    first = register(registry)
    again = register(registry, name="renamed", metrics={"map50": 0.9}, data_seed=8)

    assert again == first
    assert [m.version for m in registry.versions()] == ["1"]


def test_changed_files_make_a_new_version_and_move_latest(registry: ModelRegistry) -> None:
    first = register(registry)
    second = register(registry, {**WEIGHTS, "model.safetensors": safetensors("weights v2")})

    assert (first.version, second.version) == ("1", "2")
    assert second.digest != first.digest
    assert registry.get() == second
    assert registry.get("latest") == second
    assert registry.get("1") == first
    assert registry.versions() == [first, second]


def test_renaming_a_file_is_a_new_version(registry: ModelRegistry) -> None:
    register(registry, {"a.safetensors": safetensors("same bytes")})
    assert register(registry, {"b.safetensors": safetensors("same bytes")}).version == "2"


def test_re_registering_old_files_moves_latest_back(registry: ModelRegistry) -> None:
    first = register(registry)
    register(registry, {"model.safetensors": safetensors("other")})
    assert register(registry) == first
    assert registry.get() == first


def test_register_without_set_latest_keeps_the_served_version(registry: ModelRegistry) -> None:
    first = register(registry)
    candidate = register(registry, {"model.safetensors": safetensors("candidate")}, set_latest=False)
    assert candidate.version == "2"
    assert registry.get() == first
    assert registry.get("2") == candidate


def test_versions_are_ordered_numerically(registry: ModelRegistry) -> None:
    for n in range(10):
        register(registry, {"w.npz": npz(n)})
    assert [m.version for m in registry.versions()] == [str(n) for n in range(1, 11)]
    assert registry.get().version == "10"


def test_files_given_as_paths(registry: ModelRegistry, tmp_path: Path) -> None:
    path = tmp_path / "model.keras"
    path.write_bytes(keras_archive("v1"))
    model = register(registry, {"model.keras": path})
    assert model.files["model.keras"] == {"sha256": sha256_hex(path.read_bytes()), "size_bytes": path.stat().st_size}
    assert register(registry, {"model.keras": path.read_bytes()}) == model


def test_tasks_whose_names_share_a_prefix_are_separate(store: ObjectStore) -> None:
    register(ModelRegistry(store, "bubbles-v2"))
    bubbles = ModelRegistry(store, "bubbles")
    assert bubbles.versions() == []
    assert register(bubbles).version == "1"
    with pytest.raises(NotFound, match=r"task 'bubbles' has no model version '2' \(available: 1\)"):
        bubbles.get("2")


def test_empty_registry_has_no_latest(registry: ModelRegistry) -> None:
    assert registry.versions() == []
    with pytest.raises(NotFound, match="task 'bubbles' has no registered model yet"):
        registry.get()


def test_missing_version_names_the_available_ones(registry: ModelRegistry) -> None:
    register(registry)
    register(registry, {"model.safetensors": safetensors("v2")})
    with pytest.raises(NotFound, match=r"task 'bubbles' has no model version '7' \(available: 1, 2\)"):
        registry.get("7")


def test_non_numeric_version_is_not_found(registry: ModelRegistry) -> None:
    with pytest.raises(NotFound, match="version '../1' is not a registry version number"):
        registry.get("../1")


@pytest.mark.parametrize("file_name", ["model.pkl", "model.pt.pkl", "weights.h5", "model"])
def test_unsafe_format_is_rejected(registry: ModelRegistry, file_name: str) -> None:
    with pytest.raises(InvalidInput, match=f"model file '{file_name}': unsafe or unknown format, expected one of"):
        register(registry, {file_name: b"x"})
    assert registry.versions() == []


@pytest.mark.parametrize("file_name", ["../model.pt", "dir/model.pt", ".hidden.pt", "", "metadata.json", "a b.pt"])
def test_file_name_with_a_path_or_odd_characters_is_rejected(registry: ModelRegistry, file_name: str) -> None:
    with pytest.raises(InvalidInput, match="expected a plain file name"):
        register(registry, {file_name: b"x"})


def test_model_without_files_is_rejected(registry: ModelRegistry) -> None:
    with pytest.raises(InvalidInput, match="at least one file"):
        register(registry, {})


@pytest.mark.parametrize("task", ["Bubbles", "1task", "bub_bles", ""])
def test_bad_task_name_is_rejected(store: ObjectStore, task: str) -> None:
    with pytest.raises(ValueError, match="must be lower-case letters, digits and '-'"):
        ModelRegistry(store, task)


def test_fetch_downloads_verified_files(registry: ModelRegistry, tmp_path: Path) -> None:
    model = register(registry)
    target = registry.fetch(model, tmp_path)
    assert target == tmp_path / "bubbles" / "1"
    assert {p.name: p.read_bytes() for p in target.iterdir()} == WEIGHTS


def test_second_fetch_is_a_cache_hit(registry: ModelRegistry, tmp_path: Path, monkeypatch) -> None:
    model = register(registry)
    registry.fetch(model, tmp_path)

    def no_download(*args: object) -> bytes:
        raise AssertionError("files already fetched must not be downloaded again")

    monkeypatch.setattr(registry.store, "get_bytes", no_download)
    assert registry.fetch(model, tmp_path) == tmp_path / "bubbles" / "1"


def test_fetch_replaces_a_corrupted_local_file(registry: ModelRegistry, tmp_path: Path) -> None:
    model = register(registry)
    target = registry.fetch(model, tmp_path)
    (target / "model.safetensors").write_bytes(b"truncated")
    registry.fetch(model, tmp_path)
    assert (target / "model.safetensors").read_bytes() == safetensors("weights v1")


def test_fetch_rejects_a_tampered_object(registry: ModelRegistry, tmp_path: Path) -> None:
    model = register(registry)
    registry.store.put_bytes(registry.store.key("models", "bubbles", "1", "config.json"), b'{"layers": 4}')
    with pytest.raises(InvalidInput, match="sha256 does not match the reference"):
        registry.fetch(model, tmp_path)


def test_ensure_bundled_registers_once_and_takes_latest_only_in_an_empty_registry(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    weights = tmp_path / "bundled.safetensors"
    weights.write_bytes(safetensors("bundled weights"))
    card = tmp_path / "bundled.json"
    card.write_text(json.dumps({"name": "bubbles-tiny", "metrics": {"map50": 0.3}, "config": CONFIG, "data_seed": 1}))

    bundled = registry.ensure_bundled(weights, card)
    assert (bundled.version, bundled.name, bundled.metrics) == ("1", "bubbles-tiny", {"map50": 0.3})
    assert registry.get() == bundled

    trained = register(registry)
    assert registry.ensure_bundled(weights, card) == bundled
    assert registry.get() == trained


def test_to_proto(registry: ModelRegistry) -> None:
    model = register(registry, metrics={"map50": 0.5, "recall": 0.75})
    proto = model.to_proto()

    assert (proto.model.name, proto.model.version) == ("bubbles-ssd", "1")
    assert proto.model == model.ref()
    assert proto.created.ToDatetime(tzinfo=dt.UTC) == dt.datetime.fromisoformat(model.created)
    assert dict(proto.metrics) == {"map50": 0.5, "recall": 0.75}
    assert RegisteredModel(**json.loads(proto.metadata_json)) == model


def test_promote_moves_latest_to_the_version_named(store: ObjectStore) -> None:
    registry = ModelRegistry(store, "bubbles")
    first = registry.register({"w.json": b"{}"}, name="ssd", metrics={"detection_rate": 0.8}, config={}, data_seed=0)
    second = registry.register({"w.json": b'{"a": 1}'}, name="ssd", metrics={"detection_rate": 0.7}, config={}, data_seed=1)
    assert registry.get().version == second.version
    assert registry.promote(first.version).version == first.version
    assert registry.get().version == first.version
    assert len(registry.versions()) == 2
    with pytest.raises(NotFound, match="no model version '9'"):
        registry.promote("9")


def _bundle(tmp_path: Path, content: bytes = safetensors("w 1")) -> Path:
    weights = tmp_path / "bundle" / "toy-model.safetensors"
    weights.parent.mkdir(exist_ok=True)
    weights.write_bytes(content)
    weights.with_suffix(".json").write_text(json.dumps(
        {"name": "toy-model", "metrics": {"dice": 0.8}, "config": {"depth": 3}, "data_seed": 5}))
    return weights


def test_resolve_checkpoint_without_a_store_serves_the_bundled_model(tmp_path: Path) -> None:
    weights = _bundle(tmp_path)
    served = resolve_checkpoint("toy", weights, store=None, cache_dir=tmp_path / "cache")
    assert served.weights == weights and served.config == {"depth": 3} and served.metrics == {"dice": 0.8}
    assert (served.ref.name, served.ref.version) == ("toy-model", "bundled")


def test_resolve_checkpoint_registers_the_bundle_then_serves_the_pinned_or_latest(store: ObjectStore, tmp_path: Path, monkeypatch) -> None:
    weights = _bundle(tmp_path)
    first = resolve_checkpoint("toy", weights, store=store, cache_dir=tmp_path / "cache")
    assert first.ref.version == "1" and first.weights.read_bytes() == weights.read_bytes()
    registry = ModelRegistry(store, "toy")
    registry.register({"toy-model.safetensors": safetensors("retrained")}, name="toy-model", metrics={"dice": 0.9},
                      config={"depth": 4}, data_seed=6)
    latest = resolve_checkpoint("toy", weights, store=store, cache_dir=tmp_path / "cache")
    assert latest.ref.version == "2" and latest.weights.read_bytes() == safetensors("retrained") and latest.config == {"depth": 4}
    monkeypatch.setenv("NIGHTSHIFT_MODEL_VERSION", "1")
    assert resolve_checkpoint("toy", weights, store=store, cache_dir=tmp_path / "cache").ref.version == "1"
    assert resolve_checkpoint("toy", weights, store=store, cache_dir=tmp_path / "cache", version="2").ref.version == "2"
    with pytest.raises(NotFound, match="no model version '7'"):
        resolve_checkpoint("toy", weights, store=store, cache_dir=tmp_path / "cache", version="7")


def test_resolve_checkpoint_needs_a_file_of_the_bundled_format(store: ObjectStore, tmp_path: Path) -> None:
    ModelRegistry(store, "toy").register({"other.json": b"{}"}, name="x", metrics={}, config={}, data_seed=0)
    with pytest.raises(FailedPrecondition, match=r"expected one \.safetensors file"):
        resolve_checkpoint("toy", _bundle(tmp_path), store=store, cache_dir=tmp_path / "cache", version="1")


def test_bundled_weights_finds_the_one_shipped_file(tmp_path: Path) -> None:
    weights = _bundle(tmp_path)
    assert bundled_weights(weights.parent, ".safetensors") == weights
    with pytest.raises(FailedPrecondition, match=r"expected one shipped \.keras model .* found \[\]"):
        bundled_weights(weights.parent, ".keras")
    (weights.parent / "second.safetensors").write_bytes(b"x")
    with pytest.raises(FailedPrecondition, match=r"found \['second.safetensors', 'toy-model.safetensors'\]"):
        bundled_weights(weights.parent, ".safetensors")


def _safetensors_tensor(dtype: str, raw: bytes, count: int) -> bytes:
    header = json.dumps({"w": {"dtype": dtype, "shape": [count], "data_offsets": [0, len(raw)]}}).encode()
    return struct.pack("<Q", len(header)) + header + raw


@pytest.mark.parametrize("dtype, raw", [
    ("F32", np.array([1.0, np.nan], "<f4").tobytes()),
    ("F16", np.array([np.inf, 1.0], "<f2").tobytes()),
    ("F64", np.array([0.0, -np.inf], "<f8").tobytes()),
    ("BF16", (np.array([1.0, np.nan], "<f4").view("<u4") >> 16).astype("<u2").tobytes()),
])
def test_non_finite_safetensors_weights_are_refused(registry: ModelRegistry, dtype: str, raw: bytes) -> None:
    with pytest.raises(InvalidInput, match=r"model file 'model.safetensors': 1 of 2 values of weight 'w' are NaN or infinite"):
        register(registry, {"model.safetensors": _safetensors_tensor(dtype, raw, 2)})
    assert registry.versions() == []
    finite = np.array([1.0, 2.0], "<f4")
    bf16 = (finite.view("<u4") >> 16).astype("<u2").tobytes()
    assert register(registry, {"model.safetensors": _safetensors_tensor("BF16", bf16, 2)}).version == "1"


def test_a_tensor_outside_its_safetensors_file_is_refused(registry: ModelRegistry) -> None:
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    with pytest.raises(InvalidInput, match="tensor 'w' lies outside the file"):
        register(registry, {"model.safetensors": struct.pack("<Q", len(header)) + header + b"\0" * 8})


def test_non_finite_npz_weights_are_refused(registry: ModelRegistry) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, counts=np.array([1, 2]), w=np.array([np.nan, 1.0]))
    with pytest.raises(InvalidInput, match="1 of 2 values of weight 'w' are NaN"):
        register(registry, {"w.npz": buffer.getvalue()})


def test_a_keras_model_with_a_nan_weight_is_refused(registry: ModelRegistry, tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    shipped = next(Path(__file__).resolve().parents[2].glob("services/*/src/nightshift/*/weights/*.keras"), None)
    if shipped is None:
        pytest.skip("no Keras service checked out")
    with zipfile.ZipFile(shipped) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    weights = tmp_path / "model.weights.h5"
    weights.write_bytes(members["model.weights.h5"])
    with h5py.File(weights, "r+") as h5:
        found: list[str] = []
        h5.visititems(lambda name, node: found.append(name) if isinstance(node, h5py.Dataset) and node.dtype.kind == "f" else None)
        h5[found[0]][...] = np.nan
    poisoned = io.BytesIO()
    with zipfile.ZipFile(poisoned, "w") as archive:
        for name, blob in {**members, "model.weights.h5": weights.read_bytes()}.items():
            archive.writestr(name, blob)

    assert register(registry, {"model.keras": shipped}).version == "1"  # the shipped model passes
    with pytest.raises(InvalidInput, match=f"values of weight '{found[0]}' are NaN or infinite"):
        register(registry, {"model.keras": poisoned.getvalue()})
    assert registry.get().version == "1"


def test_a_torch_state_dict_with_a_nan_weight_is_refused(registry: ModelRegistry) -> None:
    torch = pytest.importorskip("torch")
    buffer = io.BytesIO()
    torch.save({"conv.weight": torch.full((2, 2), float("nan")), "steps": torch.tensor([3])}, buffer)
    with pytest.raises(InvalidInput, match="4 of 4 values of weight 'conv.weight' are NaN"):
        register(registry, {"model.pt": buffer.getvalue()})


def test_a_registration_that_loses_its_claim_withdraws_it_and_takes_the_next_number(registry: ModelRegistry, monkeypatch) -> None:
    store = registry.store
    put_bytes = store.put_bytes
    raced: list[str] = []

    def rival_claims_the_same_number(key: str, data: bytes, **kwargs: object):  # type: ignore[no-untyped-def]
        ref = put_bytes(key, data, **kwargs)  # type: ignore[arg-type]
        if "/.claim-" in key and not raced:  # another process claims this number at the same moment, and keeps it
            raced.append(key.rsplit("/", 1)[0] + "/.claim-rival")
            put_bytes(raced[0], b"")
        return ref

    monkeypatch.setattr(store, "put_bytes", rival_claims_the_same_number)
    model = register(registry)
    assert model.version == "2" and raced[0].endswith("/1/.claim-rival")
    assert list(store.list_keys(store.key("models", "bubbles", "1") + "/")) == [raced[0]]  # our claim withdrawn
    assert [k.rsplit("/", 1)[1] for k in store.list_keys(store.key("models", "bubbles", "2") + "/")] == \
        ["config.json", "metadata.json", "model.safetensors"]  # claim removed once the metadata is written


def test_a_failed_registration_frees_its_number(registry: ModelRegistry, monkeypatch) -> None:
    store = registry.store
    put_bytes = store.put_bytes

    def metadata_write_fails(key: str, data: bytes, **kwargs: object):  # type: ignore[no-untyped-def]
        if key.endswith("metadata.json"):
            raise StoreUnavailable("object store unavailable for metadata.json")
        return put_bytes(key, data, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "put_bytes", metadata_write_fails)
    with pytest.raises(StoreUnavailable):
        register(registry)
    assert list(store.list_keys(store.key("models", "bubbles") + "/")) == []
    monkeypatch.setattr(store, "put_bytes", put_bytes)
    assert register(registry).version == "1"
