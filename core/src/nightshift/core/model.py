"""What a science service implements for the runtime to serve it: :class:`TaskModel`.

A service's servicer module subclasses :class:`TaskModel`: it loads the service's model and
translates between the contract's types and the service's own code. The runtime
(:mod:`nightshift.core.server`) does everything else: decoding and validating tiles, batching
limits, deadlines, health, metrics, errors.
"""

from __future__ import annotations

import abc
import contextvars
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from nightshift.core.errors import Cancelled, DeadlineExceeded, FailedPrecondition, InvalidInput, NotFound
from nightshift.core.tiles import Tile, TileSpec
from nightshift.v1 import results_pb2, task_service_pb2

__all__ = ["TaskModel", "ProgressCallback", "CallScope", "check_cancelled", "current_scope", "typed_overrides"]

ProgressCallback = Callable[[task_service_pb2.TrainProgress], None]


class CallScope:
    """Whether the call a worker thread works for is still wanted: not cancelled, not past its deadline.

    The server runtime opens one per long call (``Train``, an ingest) and makes it current in the
    worker thread; long work calls :func:`check_cancelled` between steps (the runtime does at every
    progress report, and the registry before it writes a version or moves ``LATEST``), so a call
    its client cancelled, or whose deadline passed, stops there and keeps nothing.

    Parameters
    ----------
    timeout_s : float or None
        Seconds left to the call's deadline (None: no deadline).
    what : str
        How messages name the call, e.g. ``"Train"``.
    """

    def __init__(self, timeout_s: float | None = None, *, what: str = "the call") -> None:
        self.deadline = None if timeout_s is None else time.monotonic() + timeout_s
        self.what = what
        self._cancelled = threading.Event()
        self._reason = ""

    def cancel(self, reason: str = "cancelled by its client") -> None:
        """Mark the call unwanted; the work stops at its next check."""
        if not self._cancelled.is_set():
            self._reason = reason
            self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def check(self) -> None:
        """Raise if the call is cancelled or past its deadline.

        Raises
        ------
        Cancelled
            The client cancelled the call or went away.
        DeadlineExceeded
            The call's deadline passed.
        """
        if self._cancelled.is_set():
            raise Cancelled(f"{self.what} stopped: {self._reason}")
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise DeadlineExceeded(f"{self.what} stopped: its deadline passed")

    def run(self, work: Callable[..., object], *args: object) -> object:
        """Call ``work(*args)`` with this scope current (in the calling thread)."""
        token = _scope.set(self)
        try:
            return work(*args)
        finally:
            _scope.reset(token)


_scope: contextvars.ContextVar[CallScope | None] = contextvars.ContextVar("nightshift_call_scope", default=None)


def current_scope() -> CallScope | None:
    """The :class:`CallScope` of the call this thread works for, if any."""
    return _scope.get()


def check_cancelled() -> None:
    """Raise :class:`~nightshift.core.errors.Cancelled` or :class:`~nightshift.core.errors.DeadlineExceeded`
    if the call this thread works for is no longer wanted; nothing outside a call's scope."""
    scope = _scope.get()
    if scope is not None:
        scope.check()


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a JSON list" + (f" of {_kind(value[0]).removeprefix('a ').removeprefix('an ')}s" if value else "")
    if isinstance(value, dict):
        return "a JSON object"
    return type(value).__name__


def _fits(value: Any, default: Any) -> bool:
    if default is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, (list, tuple)):
        return isinstance(value, list) and (not default or all(_fits(v, default[0]) for v in value))
    if isinstance(default, dict):
        return isinstance(value, dict)
    return True


def typed_overrides(defaults: Mapping[str, Any], overrides: Mapping[str, str], *, what: str = "override") -> dict[str, Any]:
    """``TrainRequest.overrides`` (strings) as values of their fields' types, checked against ``defaults``.

    Each value is read as JSON (a bare word stays a string where the default is one) and must be of its
    default's kind: an integer for an int, a number for a float, true/false for a bool, a list (of the
    first element's kind) for a list or tuple. The science services' own config code then checks ranges.

    >>> typed_overrides({"epochs": 3, "backbone": "vgg16"}, {"epochs": "5", "backbone": "resnet"})
    {'epochs': 5, 'backbone': 'resnet'}

    Raises
    ------
    InvalidInput
        A field not in ``defaults``, or a value not of its kind (the message names both).
    """
    parsed: dict[str, Any] = {}
    for key, text in overrides.items():
        if key not in defaults:
            raise InvalidInput(f"{what} {key!r}: not a field; expected one of {sorted(defaults)}")
        default = defaults[key]
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not _fits(value, default):
            raise InvalidInput(f"{what} {key}={text!r}: expected {_kind(default)} (the default is {json.dumps(default, default=str)})")
        parsed[key] = value
    return parsed


class TaskModel(abc.ABC):
    """A science task as the runtime serves it.

    Lifecycle: :meth:`load` then :meth:`warmup` run once in a worker thread before the server
    reports SERVING; :meth:`unload` runs after the server has drained. Every other method may be
    called from worker threads while serving; :meth:`infer` is called by at most
    ``ServerOptions.compute_slots`` threads at once.
    """

    task: ClassVar[str]
    """Task name, e.g. ``"bubbles"``."""
    summary: ClassVar[str]
    """One line saying what the task does."""
    output_kind: ClassVar[int]
    """A ``task_service_pb2.OutputKind`` value."""
    spec: TileSpec
    """The tiles the task accepts."""

    @abc.abstractmethod
    def load(self) -> None:
        """Load the serving model (weights, registry lookups). Blocking; called once."""

    def warmup(self) -> None:
        """Run the model once so the first request pays no start-up cost (default: nothing)."""

    def unload(self) -> None:
        """Release the model after the server has drained (default: nothing)."""

    @abc.abstractmethod
    def serving_model(self) -> results_pb2.ModelRef:
        """The model version served when a request names none."""

    def model_ref(self, model_version: str) -> results_pb2.ModelRef:
        """The model a request's ``model_version`` selects (empty: the serving model).

        Raises
        ------
        NotFound
            The version is not one this server can run.
        """
        serving = self.serving_model()
        if model_version in ("", serving.version):
            return serving
        raise NotFound(f"{self.task}: model version {model_version!r} is not served here (serving {serving.version!r})")

    def models(self) -> list[task_service_pb2.ModelVersion]:
        """Model versions available in the registry (default: none listed)."""
        return []

    @abc.abstractmethod
    def infer(self, tiles: Sequence[Tile], model: results_pb2.ModelRef) -> list[results_pb2.TileResult]:
        """Run ``model`` on a batch of validated tiles; one result per tile, in order."""

    def train(self, request: task_service_pb2.TrainRequest, progress: ProgressCallback) -> task_service_pb2.ModelVersion:
        """Train and register a model, calling ``progress`` after each epoch; return the version.

        The runtime runs one training per service at a time. ``progress`` raises
        :class:`~nightshift.core.errors.Cancelled` (or ``DeadlineExceeded``) once the caller has
        cancelled or its deadline has passed, and :meth:`ModelRegistry.register
        <nightshift.core.registry.ModelRegistry.register>` refuses to register then: let it
        propagate. A long step between reports may call :func:`check_cancelled`.
        """
        raise FailedPrecondition(f"task {self.task!r} has no trainable model")

    def evaluate(self, request: task_service_pb2.EvaluateRequest) -> task_service_pb2.EvaluateResponse:
        """Score a model on a named dataset."""
        raise FailedPrecondition(f"task {self.task!r} has no evaluation")
