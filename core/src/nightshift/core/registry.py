"""Model registry in the object store: versioned checkpoints per task with their provenance.

Layout under the store's prefix::

    models/<task>/<version>/<file>          checkpoint files (safe formats only)
    models/<task>/<version>/metadata.json   metrics, training config, data seed, code version, time
    models/<task>/LATEST                    the version served by default

A version exists once its ``metadata.json`` is written (files first, metadata last), and ``LATEST``
moves only after that, so a crash mid-registration never exposes a half-written version.
Registering the same files again returns the existing version (idempotent). Only formats that load
without unpickling are accepted: safetensors, native Keras, JSON, NumPy ``.npz`` (loaded with
``allow_pickle=False``) and torch ``.pt`` state dicts (loaded with ``weights_only=True``). Each file's
content is checked against its format when registered and again when fetched (a file planted in the
store is refused before anything loads it): a ``.pt`` archive's pickles may name only the few globals
a state dict needs (scanned with :mod:`pickletools`, never unpickled), an ``.npz`` may hold no object
array, a safetensors header must be JSON.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
import json
import os
import pickletools
import re
import struct
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp

from nightshift.core.errors import FailedPrecondition, InvalidInput, NotFound, ObjectNotFound
from nightshift.core.model import check_cancelled
from nightshift.core.store import ObjectStore, sha256_hex
from nightshift.core.version import code_version
from nightshift.v1 import results_pb2, task_service_pb2, tile_pb2

__all__ = ["ModelRegistry", "RegisteredModel", "SAFE_SUFFIXES", "ServedCheckpoint", "bundled_weights", "check_safe_format",
           "resolve_checkpoint"]

SAFE_SUFFIXES = (".safetensors", ".keras", ".json", ".npz", ".pt")
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_TASK_NAME = re.compile(r"^[a-z][a-z0-9-]*$")
# What a torch state dict's pickle names: containers, tensor rebuilders and typed storages.
_TORCH_STATE_DICT_GLOBALS = {
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch", "Size"),
}
_TORCH_STORAGE = re.compile(r"^[A-Z][A-Za-z0-9]*Storage$")
_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING"}


def _pickle_globals(data: bytes) -> Iterator[tuple[str, str]]:
    """Every (module, name) a pickle would import, read from its opcodes without unpickling.

    Raises
    ------
    InvalidInput
        The pickle is malformed, or imports a global built at run time (STACK_GLOBAL of non-literals).
    """
    strings: list[str] = []
    try:
        for opcode, arg, _ in pickletools.genops(data):
            if opcode.name == "GLOBAL":
                module, _, name = str(arg).partition(" ")
                yield module, name
            elif opcode.name == "STACK_GLOBAL":
                if len(strings) < 2:
                    raise InvalidInput("pickle imports a global whose name is not a literal")
                yield strings[-2], strings[-1]
            if opcode.name in _STRING_OPS:
                strings.append(str(arg))
            elif opcode.name not in ("MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"):
                strings.clear()  # STACK_GLOBAL's module and name are the two pushes right before it
    except ValueError as exc:
        raise InvalidInput(f"malformed pickle: {exc}") from None


def _check_torch_state_dict(file_name: str, blob: bytes) -> None:
    if not zipfile.is_zipfile(io.BytesIO(blob)):
        raise InvalidInput(f"model file {file_name!r}: not a torch zip archive (a bare pickle is never loaded)")
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        pickles = [n for n in archive.namelist() if n.endswith(".pkl")]
        if not pickles:
            raise InvalidInput(f"model file {file_name!r}: a torch archive holds a data.pkl; this one holds none")
        for member in pickles:
            for module, name in _pickle_globals(archive.read(member)):
                storage = module == "torch" and _TORCH_STORAGE.match(name)
                if (module, name) not in _TORCH_STATE_DICT_GLOBALS and not storage:
                    raise InvalidInput(f"model file {file_name!r}: its pickle imports {module}.{name}, not part of a state dict")


def _check_npz(file_name: str, blob: bytes) -> None:
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as arrays:
            for name in arrays.files:
                arrays[name]  # reading an object array without pickle raises
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise InvalidInput(f"model file {file_name!r}: not a pickle-free .npz ({exc})") from None


def _check_safetensors(file_name: str, blob: bytes) -> None:
    header_bytes = struct.unpack("<Q", blob[:8])[0] if len(blob) >= 8 else -1
    try:
        if not 0 < header_bytes <= len(blob) - 8:
            raise ValueError(f"header of {header_bytes} bytes")
        if not isinstance(json.loads(blob[8 : 8 + header_bytes]), dict):
            raise ValueError("header is not a JSON object")
    except ValueError as exc:
        raise InvalidInput(f"model file {file_name!r}: not a safetensors file ({exc})") from None


def _check_keras(file_name: str, blob: bytes) -> None:
    if not zipfile.is_zipfile(io.BytesIO(blob)):
        raise InvalidInput(f"model file {file_name!r}: not a native Keras archive (zip)")
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        if "config.json" not in archive.namelist():
            raise InvalidInput(f"model file {file_name!r}: a Keras archive holds config.json; this one does not")


def _check_json(file_name: str, blob: bytes) -> None:
    try:
        json.loads(blob)
    except ValueError as exc:
        raise InvalidInput(f"model file {file_name!r}: not JSON ({exc})") from None


_FORMAT_CHECKS = {".pt": _check_torch_state_dict, ".npz": _check_npz, ".safetensors": _check_safetensors,
                  ".keras": _check_keras, ".json": _check_json}


def check_safe_format(file_name: str, blob: bytes) -> None:
    """Check that ``blob`` is a file of the safe format its name's suffix says, without loading it.

    Raises
    ------
    InvalidInput
        An unsafe or unknown suffix, or content that is not of the format (e.g. a pickle payload).
    """
    suffix = next((s for s in SAFE_SUFFIXES if file_name.endswith(s)), None)
    if suffix is None:
        raise InvalidInput(f"model file {file_name!r}: unsafe or unknown format, expected one of {', '.join(SAFE_SUFFIXES)}")
    _FORMAT_CHECKS[suffix](file_name, blob)


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
            No files, a file name with a path or odd characters, or an unsafe format or content
            (see :func:`check_safe_format`).
        """
        check_cancelled()  # a training its caller cancelled, or past its deadline, registers nothing
        if not files:
            raise InvalidInput("a model version needs at least one file")
        blobs: dict[str, bytes] = {}
        for file_name, content in files.items():
            if not _FILE_NAME.match(file_name) or file_name == "metadata.json":
                raise InvalidInput(f"model file name {file_name!r}: expected a plain file name")
            blobs[file_name] = Path(content).read_bytes() if isinstance(content, Path) else bytes(content)
            check_safe_format(file_name, blobs[file_name])
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
        check_cancelled()  # the version exists once its metadata is written: the last moment to stop
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
        """Download a version's files into ``directory/<task>/<version>/`` (verified, cached) and return it.

        Raises
        ------
        InvalidInput
            A file is not of the safe format its name says (e.g. a pickle planted in the store), or
            its bytes do not match the version's metadata.
        """
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
            if not _FILE_NAME.match(file_name):
                raise InvalidInput(f"model version {model.version}: file name {file_name!r} is not a plain file name")
            blob = self.store.get_bytes(ref)
            check_safe_format(file_name, blob)
            path.write_bytes(blob)
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
