"""What a science service implements for the runtime to serve it: :class:`TaskModel`.

A service's servicer module subclasses :class:`TaskModel`: it loads the service's model and
translates between the contract's types and the service's own code. The runtime
(:mod:`nightshift.core.server`) does everything else: decoding and validating tiles, batching
limits, deadlines, health, metrics, errors.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import ClassVar

from nightshift.core.errors import FailedPrecondition, NotFound
from nightshift.core.tiles import Tile, TileSpec
from nightshift.v1 import results_pb2, task_service_pb2

__all__ = ["TaskModel", "ProgressCallback"]

ProgressCallback = Callable[[task_service_pb2.TrainProgress], None]


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
        """Train and register a model, calling ``progress`` after each epoch; return the version."""
        raise FailedPrecondition(f"task {self.task!r} has no trainable model")

    def evaluate(self, request: task_service_pb2.EvaluateRequest) -> task_service_pb2.EvaluateResponse:
        """Score a model on a named dataset."""
        raise FailedPrecondition(f"task {self.task!r} has no evaluation")
