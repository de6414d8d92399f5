"""Model registry in the object store: versioned checkpoints per task with their provenance.

Layout under the store's prefix::

    models/<task>/<version>/<file>          checkpoint files (safe formats only)
    models/<task>/<version>/metadata.json   metrics, training config, data seed, code version, time
    models/<task>/LATEST                    the version served by default

A version exists once its ``metadata.json`` is written (files first, metadata last), and ``LATEST``
moves only after that, so a crash mid-registration never exposes a half-written version.
Registering the same files again returns the existing version (idempotent). Only formats that load
without unpickling are accepted: safetensors, native Keras, JSON, NumPy ``.npz`` (loaded with
``allow_pickle=False``) and torch ``.pt`` state dicts (loaded with ``weights_only=True``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from nightshift.core.errors import FailedPrecondition, InvalidInput, NotFound, ObjectNotFound
from nightshift.core.store import ObjectStore, sha256_hex
from nightshift.core.version import code_version
from nightshift.v1 import results_pb2, task_service_pb2, tile_pb2

__all__ = ["ModelRegistry", "RegisteredModel", "SAFE_SUFFIXES", "ServedCheckpoint", "bundled_weights", "resolve_checkpoint"]

SAFE_SUFFIXES = (".safetensors", ".keras", ".json", ".npz", ".pt")
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_TASK_NAME = re.compile(r"^[a-z][a-z0-9-]*$")


@dataclasses.dataclass(frozen=True)
class RegisteredModel:
    """One registered model version and its provenance."""

    task: str
    name: str
    version: str
    created: str  # ISO 8601, UTC
    metrics: dict[str, float]
    config: dict[str, Any]
    data_seed: int
    code_version: str
    files: dict[str, dict[str, Any]]  # file name -> {"sha256", "size_bytes"}
    digest: str  # SHA-256 over the files' names and digests: equal digests, equal weights

    def to_proto(self) -> task_service_pb2.ModelVersion:
        created = Timestamp()
        created.FromDatetime(dt.datetime.fromisoformat(self.created))
        return task_service_pb2.ModelVersion(
            model=self.ref(),
            created=created,
            metrics=self.metrics,
            metadata_json=json.dumps(dataclasses.asdict(self), sort_keys=True),
        )

    def ref(self) -> results_pb2.ModelRef:
        return results_pb2.ModelRef(name=self.name, version=self.version)


def _files_digest(files: Mapping[str, bytes]) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(f"{name}\0{sha256_hex(files[name])}\n".encode())
    return h.hexdigest()


class ModelRegistry:
    """Versions of one task's models in an :class:`ObjectStore`.

    Parameters
    ----------
    store : ObjectStore
        Where checkpoints live.
    task : str
        Task name, e.g. ``"bubbles"``.
    """

    def __init__(self, store: ObjectStore, task: str) -> None:
        if not _TASK_NAME.match(task):
            raise ValueError(f"task name {task!r} must be lower-case letters, digits and '-'")
        self.store = store
        self.task = task

    def _key(self, *parts: str) -> str:
        return self.store.key("models", self.task, *parts)

    def register(
        self,
        files: Mapping[str, bytes | Path],
        *,
        name: str,
        metrics: Mapping[str, float],
        config: Mapping[str, Any],
        data_seed: int,
        set_latest: bool = True,
    ) -> RegisteredModel:
        """Store a checkpoint as a new version, or return the version that already holds these files.

        Parameters
        ----------
        files : mapping of file name to bytes or path
            The checkpoint, in safe formats only (see ``SAFE_SUFFIXES``).
        name : str
            Model name, e.g. ``"bubbles-ssd-lite"``.
        metrics : mapping
            Evaluation metrics of the checkpoint.
        config : mapping
            The exact training configuration (JSON-serialisable).
        data_seed : int
            Seed of the training data.
        set_latest : bool
            Make this version the one served by default.

        Raises
        ------
        InvalidInput
            No files, a file name with a path or odd characters, or an unsafe format.
        """
        if not files:
            raise InvalidInput("a model version needs at least one file")
        blobs: dict[str, bytes] = {}
        for file_name, content in files.items():
            if not _FILE_NAME.match(file_name) or file_name == "metadata.json":
                raise InvalidInput(f"model file name {file_name!r}: expected a plain file name")
            if not file_name.endswith(SAFE_SUFFIXES):
                raise InvalidInput(
                    f"model file {file_name!r}: unsafe or unknown format, expected one of {', '.join(SAFE_SUFFIXES)}"
                )
            blobs[file_name] = Path(content).read_bytes() if isinstance(content, Path) else bytes(content)
        digest = _files_digest(blobs)
        existing = self.versions()
        for model in existing:
            if model.digest == digest:
                if set_latest:
                    self._set_latest(model.version)
                return model
        version = str(max((int(m.version) for m in existing), default=0) + 1)
        model = RegisteredModel(
            task=self.task,
            name=name,
            version=version,
            created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            metrics={k: float(v) for k, v in metrics.items()},
            config=json.loads(json.dumps(dict(config))),
            data_seed=int(data_seed),
            code_version=code_version(),
            files={n: {"sha256": sha256_hex(b), "size_bytes": len(b)} for n, b in blobs.items()},
            digest=digest,
        )
        for file_name, blob in blobs.items():
            self.store.put_bytes(self._key(version, file_name), blob)
        metadata = json.dumps(dataclasses.asdict(model), indent=2, sort_keys=True).encode()
        self.store.put_bytes(self._key(version, "metadata.json"), metadata, content_type="application/json")
        if set_latest:
            self._set_latest(version)
        return model

    def ensure_bundled(self, weights: Path, card: Path) -> RegisteredModel:
        """Register the default model shipped inside a service package; make it LATEST only in an empty registry.

        ``card`` is the JSON file shipped beside ``weights``: ``{"name", "metrics", "config",
        "data_seed"}`` as written by the service's ``train``. Idempotent: the same weights give the
        same version.
        """
        info = json.loads(card.read_text())
        return self.register(
            {weights.name: weights}, name=info["name"], metrics=info["metrics"], config=info["config"],
            data_seed=info["data_seed"], set_latest=not self.versions(),
        )

    def promote(self, version: str) -> RegisteredModel:
        """Make ``version`` the one served by default (move ``LATEST``) and return it.

        Raises
        ------
        NotFound
            No such version.
        """
        model = self.get(version)
        self._set_latest(model.version)
        return model

    def _set_latest(self, version: str) -> None:
        self.store.put_bytes(self._key("LATEST"), version.encode(), content_type="text/plain")

    def versions(self) -> list[RegisteredModel]:
        """Every registered version, oldest first."""
        # the trailing "/" keeps task "bubbles" from listing the versions of "bubbles-v2"
        keys = [k for k in self.store.list_keys(self._key() + "/") if k.endswith("/metadata.json")]
        models = [RegisteredModel(**json.loads(self.store.get_bytes(k))) for k in keys]
        return sorted(models, key=lambda m: int(m.version))

    def get(self, version: str = "") -> RegisteredModel:
        """The version named, or the latest when ``version`` is empty or ``"latest"``.

        Raises
        ------
        NotFound
            No such version, or nothing registered yet for the task.
        """
        if version in ("", "latest"):
            try:
                version = self.store.get_bytes(self._key("LATEST")).decode().strip()
            except ObjectNotFound:
                raise NotFound(f"task {self.task!r} has no registered model yet") from None
        if not version.isdigit():
            raise NotFound(f"task {self.task!r}: model version {version!r} is not a registry version number")
        try:
            return RegisteredModel(**json.loads(self.store.get_bytes(self._key(version, "metadata.json"))))
        except ObjectNotFound:
            available = ", ".join(m.version for m in self.versions()) or "none"
            raise NotFound(f"task {self.task!r} has no model version {version!r} (available: {available})") from None

    def fetch(self, model: RegisteredModel, directory: str | Path) -> Path:
        """Download a version's files into ``directory/<task>/<version>/`` (verified, cached) and return it."""
        target = Path(directory) / self.task / model.version
        target.mkdir(parents=True, exist_ok=True)
        for file_name, info in model.files.items():
            path = target / file_name
            if path.exists() and sha256_hex(path.read_bytes()) == info["sha256"]:
                continue
            ref = tile_pb2.ObjectRef(
                bucket=self.store.bucket, key=self._key(model.version, file_name),
                size_bytes=info["size_bytes"], sha256=info["sha256"],
            )
            path.write_bytes(self.store.get_bytes(ref))
        return target


@dataclasses.dataclass(frozen=True)
class ServedCheckpoint:
    """The checkpoint a service serves: the weights file to load, its training config and metrics, its reference."""

    weights: Path
    config: dict[str, Any]
    metrics: dict[str, float]
    ref: results_pb2.ModelRef


def bundled_weights(directory: Path, suffix: str) -> Path:
    """The one default-model weights file (``*<suffix>``, its JSON card beside it) shipped in a service package.

    Raises
    ------
    FailedPrecondition
        The directory holds no such file, or several.
    """
    found = sorted(Path(directory).glob(f"*{suffix}"))
    if len(found) != 1:
        raise FailedPrecondition(f"expected one shipped {suffix} model in {directory}, found {[p.name for p in found]}")
    return found[0]


def resolve_checkpoint(
    task: str,
    bundled_weights: Path,
    *,
    store: ObjectStore | None,
    cache_dir: str | Path,
    version: str | None = None,
) -> ServedCheckpoint:
    """The checkpoint a service loads at start-up.

    Without a store, the model shipped in the package (``bundled_weights`` and its JSON card beside
    it, same stem), reported as version ``"bundled"``. With a store, the shipped model is registered
    first (it becomes ``LATEST`` only in an empty registry), then the pinned version is fetched:
    ``version``, else ``NIGHTSHIFT_MODEL_VERSION``, else ``LATEST``.

    Raises
    ------
    NotFound
        The pinned version does not exist.
    FailedPrecondition
        The version holds no file of the bundled weights' format.
    """
    card_path = bundled_weights.with_suffix(".json")
    if store is None:
        card = json.loads(card_path.read_text())
        return ServedCheckpoint(bundled_weights, card["config"], card["metrics"],
                                results_pb2.ModelRef(name=card["name"], version="bundled"))
    registry = ModelRegistry(store, task)
    registry.ensure_bundled(bundled_weights, card_path)
    model = registry.get(os.environ.get("NIGHTSHIFT_MODEL_VERSION", "") if version is None else version)
    suffix = "".join(bundled_weights.suffixes)
    weights = [name for name in model.files if name.endswith(suffix)]
    if len(weights) != 1:
        raise FailedPrecondition(f"{task} model version {model.version} holds {sorted(model.files)}: expected one {suffix} file")
    return ServedCheckpoint(registry.fetch(model, cache_dir) / weights[0], model.config, model.metrics, model.ref())
