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
array, a safetensors header must be JSON. Every floating-point weight must be finite: a checkpoint
with a NaN or infinite weight is refused when registered, promoted or fetched, so it never becomes
``LATEST`` and is never served.

Version numbers are allocated by claim-then-verify, so registrations from several processes at once
get distinct versions: a registration writes a claim object ``models/<task>/<version>/.claim-<token>``
into the next free number and lists that version's keys; it owns the number only if its claim is
the only key there, else it withdraws the claim and tries again after a random pause. Two claims
of one number can never both win (the later writer lists the earlier claim) on any server whose
listings follow its writes; ``rclone serve s3`` ignores ``If-None-Match`` on writes, so a conditional
put would not do. A registration that fails removes what it wrote; one that crashed leaves its
objects, and their number is skipped, never reused.

A version whose ``metadata.json`` is unreadable (not JSON, fields missing, another version's record)
is skipped with a warning, and a ``LATEST`` naming one falls back to the newest readable version, so
one damaged record never stops a service from starting.

A registry made with a ``smoke`` check (:data:`SmokeCheck`: load the version's files and run the model on
a fixed input) runs it before ``LATEST`` moves to a version, whichever way it moves (``register`` with
``set_latest``, ``ensure_bundled``, ``promote``): a version whose model fails to load, whose inference
raises, or whose output holds a NaN or infinity is never made ``LATEST`` (it stays registered, unserved).
A service whose versions hold one weights file builds its check with :func:`weights_smoke`, supplying only
how to load its model and run it on :func:`smoke_input`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import io
import json
import logging
import os
import pickletools
import random
import re
import secrets
import struct
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp

from nightshift.core.errors import FailedPrecondition, InvalidInput, NightshiftError, NotFound, ObjectNotFound, Unavailable
from nightshift.core.model import check_cancelled
from nightshift.core.store import ObjectStore, sha256_hex
from nightshift.core.version import code_version
from nightshift.v1 import results_pb2, task_service_pb2, tile_pb2

__all__ = ["SmokeCheck", "ModelRegistry", "smoke_input", "weights_smoke", "RegisteredModel", "SAFE_SUFFIXES", "ServedCheckpoint", "bundled_weights", "check_finite_weights",
           "check_safe_format", "resolve_checkpoint"]

_log = logging.getLogger(__name__)

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
_CLAIM_PREFIX = ".claim-"  # no model file name starts with "." (see _FILE_NAME)
_CLAIM_ATTEMPTS = 40
_CLAIM_BACKOFF_S = 0.05  # the longest random pause after the first lost claim; grows with each loss
_SAFETENSORS_FLOATS = {"F64": "<f8", "F32": "<f4", "F16": "<f2"}  # BF16 is widened to float32 by hand


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


def _safetensors_floats(file_name: str, blob: bytes) -> Iterator[tuple[str, np.ndarray]]:
    header_bytes = struct.unpack("<Q", blob[:8])[0]
    data = memoryview(blob)[8 + header_bytes :]
    for name, info in json.loads(blob[8 : 8 + header_bytes]).items():
        if name == "__metadata__" or not isinstance(info, dict) or info.get("dtype") not in (*_SAFETENSORS_FLOATS, "BF16"):
            continue
        offsets = info.get("data_offsets")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)
                and 0 <= offsets[0] <= offsets[1] <= len(data)):
            raise InvalidInput(f"model file {file_name!r}: tensor {name!r} lies outside the file (data_offsets {offsets})")
        raw = data[offsets[0] : offsets[1]]
        if info["dtype"] == "BF16":  # the upper half of a float32
            yield name, (np.frombuffer(raw[: len(raw) // 2 * 2], "<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            dtype = np.dtype(_SAFETENSORS_FLOATS[info["dtype"]])
            yield name, np.frombuffer(raw[: len(raw) // dtype.itemsize * dtype.itemsize], dtype)


def _npz_floats(file_name: str, blob: bytes) -> Iterator[tuple[str, np.ndarray]]:
    with np.load(io.BytesIO(blob), allow_pickle=False) as arrays:
        for name in arrays.files:
            if arrays[name].dtype.kind in "fc":
                yield name, arrays[name]


def _keras_floats(file_name: str, blob: bytes) -> Iterator[tuple[str, np.ndarray]]:
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        if "model.weights.h5" not in archive.namelist():
            return
        weights = archive.read("model.weights.h5")
    import h5py  # Keras's own dependency: present wherever a Keras model is trained or served

    found: list[tuple[str, np.ndarray]] = []
    with h5py.File(io.BytesIO(weights), "r") as h5:
        h5.visititems(lambda name, node: found.append((name, node[()]))
                      if isinstance(node, h5py.Dataset) and node.dtype.kind in "fc" else None)
    yield from found


def _torch_floats(file_name: str, blob: bytes) -> Iterator[tuple[str, np.ndarray]]:
    import torch  # present wherever a torch state dict is trained or served; weights_only never unpickles code

    state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    for name, tensor in state.items():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point():
            yield name, tensor.detach().to(torch.float32).numpy()


_FLOAT_READERS = {".safetensors": _safetensors_floats, ".npz": _npz_floats, ".keras": _keras_floats, ".pt": _torch_floats}


def check_finite_weights(file_name: str, blob: bytes) -> None:
    """Check that every floating-point weight in ``blob`` (of a safe format, see :func:`check_safe_format`) is finite.

    A training that diverged saves NaN weights that load and serve without error, finding nothing;
    this is the check that keeps such a checkpoint out of the registry and away from ``LATEST``.

    Raises
    ------
    InvalidInput
        A weight is NaN or infinite (the message names the tensor and how many values), or a
        tensor's bytes lie outside the file.
    """
    suffix = next((s for s in _FLOAT_READERS if file_name.endswith(s)), None)
    if suffix is None:
        return
    for name, values in _FLOAT_READERS[suffix](file_name, blob):
        bad = values.size - int(np.count_nonzero(np.isfinite(values)))
        if bad:
            raise InvalidInput(f"model file {file_name!r}: {bad} of {values.size} values of weight {name!r} are NaN or "
                               f"infinite; a checkpoint with non-finite weights is never registered or served")


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


SmokeCheck = Callable[["RegisteredModel", Path], Any]
"""``smoke(model, directory)``: load version ``model`` from its files in ``directory`` and run it on a fixed input;
return the output's numbers (anything :func:`numpy.asarray` takes, or a sequence of such), or None. Raising
anything, or returning a NaN or infinity, keeps the version from becoming ``LATEST``."""


def smoke_input(*shape: int) -> np.ndarray:
    """The fixed input of the services' smoke checks: float32 values in [0, 1) from a fixed seed.

    Not zeros, so every weight takes part in the output; non-negative, as pixels and column densities are.
    """
    return np.random.default_rng(0).random(shape, dtype=np.float32)


def _weights_file(model: RegisteredModel, suffix: str) -> str:
    weights = [name for name in model.files if name.endswith(suffix)]
    if len(weights) != 1:
        raise FailedPrecondition(f"{model.task} model version {model.version} holds {sorted(model.files)}: expected one {suffix} file")
    return weights[0]


def weights_smoke(suffix: str, run: Callable[[Path, dict[str, Any]], Any]) -> SmokeCheck:
    """The smoke check of a task whose versions hold one ``*<suffix>`` weights file.

    ``run(weights, config)`` is the service's part: load the file with the version's training config and
    return the model's raw outputs on :func:`smoke_input` (before any threshold, which would hide a NaN).
    """

    def smoke(model: RegisteredModel, directory: Path) -> Any:
        return run(directory / _weights_file(model, suffix), model.config)

    return smoke


def _non_finite(output: Any) -> int:
    """How many of ``output``'s numbers are NaN or infinite."""
    if output is None:
        return 0
    if isinstance(output, (list, tuple)) and not all(isinstance(v, (int, float)) for v in output):
        return sum(_non_finite(part) for part in output)
    values = np.asarray(output, dtype=np.float64)
    return int(values.size - np.count_nonzero(np.isfinite(values)))


class ModelRegistry:
    """Versions of one task's models in an :class:`ObjectStore`.

    Parameters
    ----------
    store : ObjectStore
        Where checkpoints live.
    task : str
        Task name, e.g. ``"bubbles"``.
    smoke : SmokeCheck or None
        Run before ``LATEST`` moves to a version (see the module's description); None: none.
    """

    def __init__(self, store: ObjectStore, task: str, *, smoke: SmokeCheck | None = None) -> None:
        if not _TASK_NAME.match(task):
            raise ValueError(f"task name {task!r} must be lower-case letters, digits and '-'")
        self.store = store
        self.task = task
        self.smoke = smoke

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
            Make this version the one served by default (after the registry's smoke check, if it has one).

        Raises
        ------
        InvalidInput
            No files, a file name with a path or odd characters, or an unsafe format or content
            (see :func:`check_safe_format`); or, with ``set_latest``, the smoke check failed: the version is
            registered but ``LATEST`` stays where it was.
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
            check_finite_weights(file_name, blobs[file_name])
        digest = _files_digest(blobs)
        for model in self.versions():
            if model.digest == digest:
                if set_latest:
                    self._promote_checked(model) if self.smoke is not None else self._set_latest(model.version)
                return model
        version, claim = self._claim_version()
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
        written = [claim]
        try:
            for file_name, blob in blobs.items():
                written.append(self._key(version, file_name))
                self.store.put_bytes(written[-1], blob)
            metadata = json.dumps(dataclasses.asdict(model), indent=2, sort_keys=True).encode()
            check_cancelled()  # the version exists once its metadata is written: the last moment to stop
            self.store.put_bytes(self._key(version, "metadata.json"), metadata, content_type="application/json")
        except BaseException:
            for key in written:  # free the number again; what cannot be removed keeps it taken, which is safe
                with contextlib.suppress(NightshiftError):
                    self.store.delete(key)
            raise
        self.store.delete(claim)
        if set_latest:  # registered either way; LATEST only after the smoke check, if any
            self._promote_checked(model) if self.smoke is not None else self._set_latest(version)
        return model

    def _version_numbers(self) -> set[int]:
        """Every version number in use: registered, being registered, left by a crash, or unreadable."""
        root = self._key() + "/"
        numbers = set()
        for key in self.store.list_keys(root):
            version, separator, _ = key[len(root) :].partition("/")
            if separator and version.isdigit():
                numbers.add(int(version))
        return numbers

    def _claim_version(self) -> tuple[str, str]:
        """Allocate the next version number to this registration alone: the number and the key of its claim.

        Raises
        ------
        Unavailable
            Other registrations won every number tried.
        """
        token = secrets.token_hex(8)
        for attempt in range(_CLAIM_ATTEMPTS):
            version = str(max(self._version_numbers(), default=0) + 1)
            claim = self._key(version, _CLAIM_PREFIX + token)
            self.store.put_bytes(claim, b"", content_type="text/plain")
            if list(self.store.list_keys(self._key(version) + "/")) == [claim]:
                return version, claim
            # Another registration took or claimed this number too: withdraw (it may withdraw as well) and retry.
            self.store.delete(claim)
            time.sleep(random.uniform(0.0, _CLAIM_BACKOFF_S * (attempt + 1)))
        raise Unavailable(f"task {self.task!r}: no model version number won in {_CLAIM_ATTEMPTS} attempts "
                          "(other registrations are running); retry")

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

        Its stored files are downloaded and checked first (format, checksum, finite weights), so a
        version planted in the store, or registered before these checks, is never promoted blindly.

        Raises
        ------
        NotFound
            No such version.
        FailedPrecondition
            Its metadata is unreadable.
        InvalidInput
            A file fails its checks (e.g. NaN weights), or the registry's smoke check failed (the model
            did not load, its inference raised or gave NaN or infinite output); ``LATEST`` stays where it was.
        """
        model = self.get(version)
        self._promote_checked(model)
        return model

    def _promote_checked(self, model: RegisteredModel) -> None:
        """Move ``LATEST`` to ``model`` once its stored files pass their checks and its smoke inference.

        Raises
        ------
        InvalidInput
            A file fails its checks, or the smoke check raised or gave a non-finite output; ``LATEST`` stays.
        """
        with tempfile.TemporaryDirectory(prefix="nightshift-promote-") as directory:
            files = self.fetch(model, directory)
            if self.smoke is not None:
                try:
                    output = self.smoke(model, files)
                except Exception as exc:  # whatever loading or inference raised: the version is not served
                    raise InvalidInput(f"task {self.task!r} version {model.version}: its smoke inference failed "
                                       f"({type(exc).__name__}: {str(exc)[:300]}); LATEST not moved") from exc
                bad = _non_finite(output)
                if bad:
                    raise InvalidInput(f"task {self.task!r} version {model.version}: its smoke inference gave {bad} "
                                       "NaN or infinite values; LATEST not moved")
        self._set_latest(model.version)

    def _set_latest(self, version: str) -> None:
        self.store.put_bytes(self._key("LATEST"), version.encode(), content_type="text/plain")

    def _read_metadata(self, version: str) -> RegisteredModel:
        """The metadata record of ``version``.

        Raises
        ------
        ObjectNotFound
            The version has no metadata (it does not exist, or is still being registered).
        FailedPrecondition
            The record is unreadable: not JSON, fields missing or malformed, or another version's.
        """
        try:
            fields = json.loads(self.store.get_bytes(self._key(version, "metadata.json")))
            model = RegisteredModel(**fields)
            if (model.task, model.version) != (self.task, version):
                raise ValueError(f"it describes {model.task!r} version {model.version!r}")
            if not isinstance(model.files, dict) or not model.files or not all(
                isinstance(info, dict) and isinstance(info.get("sha256"), str) and isinstance(info.get("size_bytes"), int)
                for info in model.files.values()
            ):
                raise ValueError("its files are not a mapping of name to sha256 and size_bytes")
        except (ValueError, TypeError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise FailedPrecondition(f"task {self.task!r}: metadata of model version {version} is unreadable ({exc})") from None
        return model

    def versions(self) -> list[RegisteredModel]:
        """Every registered version whose metadata is readable, oldest first; each unreadable one is logged and skipped."""
        # the trailing "/" keeps task "bubbles" from listing the versions of "bubbles-v2"
        root = self._key() + "/"
        numbers = sorted({int(v) for k in self.store.list_keys(root) if k.endswith("/metadata.json")
                          and (v := k[len(root) :].partition("/")[0]).isdigit()})
        models = []
        for number in numbers:
            try:
                models.append(self._read_metadata(str(number)))
            except FailedPrecondition as exc:
                _log.warning("%s: skipped", exc)
        return models

    def get(self, version: str = "") -> RegisteredModel:
        """The version named, or the latest when ``version`` is empty or ``"latest"``.

        When ``LATEST`` names a version whose metadata is unreadable or missing, the newest readable
        version is returned instead (with a warning): a damaged record never stops a service.

        Raises
        ------
        NotFound
            No such version, or nothing (readable) registered yet for the task.
        FailedPrecondition
            The version named has unreadable metadata.
        """
        if version in ("", "latest"):
            try:
                latest = self.store.get_bytes(self._key("LATEST")).decode(errors="replace").strip()
            except ObjectNotFound:
                raise NotFound(f"task {self.task!r} has no registered model yet") from None
            try:
                if not latest.isdigit():
                    raise NotFound(f"task {self.task!r}: LATEST holds {latest[:40]!r}, not a version number")
                return self._read_metadata(latest)
            except (FailedPrecondition, NotFound) as exc:
                readable = self.versions()
                if not readable:
                    raise NotFound(f"task {self.task!r}: LATEST names {latest!r} and no version is readable ({exc})") from None
                _log.warning("%s: LATEST (%r) not served; serving the newest readable version %s instead",
                             exc, latest, readable[-1].version)
                return readable[-1]
        if not version.isdigit():
            raise NotFound(f"task {self.task!r}: model version {version!r} is not a registry version number")
        try:
            return self._read_metadata(version)
        except ObjectNotFound:
            available = ", ".join(m.version for m in self.versions()) or "none"
            raise NotFound(f"task {self.task!r} has no model version {version!r} (available: {available})") from None

    def fetch(self, model: RegisteredModel, directory: str | Path) -> Path:
        """Download a version's files into ``directory/<task>/<version>/`` (verified, cached) and return it.

        Raises
        ------
        InvalidInput
            A file is not of the safe format its name says (e.g. a pickle planted in the store), has
            a NaN or infinite weight, or its bytes do not match the version's metadata.
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
            check_finite_weights(file_name, blob)
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
    smoke: SmokeCheck | None = None,
) -> ServedCheckpoint:
    """The checkpoint a service loads at start-up.

    Without a store, the model shipped in the package (``bundled_weights`` and its JSON card beside
    it, same stem), reported as version ``"bundled"``. With a store, the shipped model is registered
    first (it becomes ``LATEST`` only in an empty registry), then the pinned version is fetched:
    ``version``, else ``NIGHTSHIFT_MODEL_VERSION``, else ``LATEST``. ``smoke`` is the task's smoke check: in an
    empty registry the shipped model becomes ``LATEST`` only if it passes.

    Raises
    ------
    NotFound
        The pinned version does not exist.
    FailedPrecondition
        The version holds no file of the bundled weights' format.
    InvalidInput
        The shipped model, registered into an empty registry, failed its smoke check.
    """
    card_path = bundled_weights.with_suffix(".json")
    if store is None:
        card = json.loads(card_path.read_text())
        return ServedCheckpoint(bundled_weights, card["config"], card["metrics"],
                                results_pb2.ModelRef(name=card["name"], version="bundled"))
    registry = ModelRegistry(store, task, smoke=smoke)
    registry.ensure_bundled(bundled_weights, card_path)
    model = registry.get(os.environ.get("NIGHTSHIFT_MODEL_VERSION", "") if version is None else version)
    weights = _weights_file(model, "".join(bundled_weights.suffixes))
    return ServedCheckpoint(registry.fetch(model, cache_dir) / weights, model.config, model.metrics, model.ref())
