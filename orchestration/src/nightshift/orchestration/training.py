"""The training flow: train a new model version through a service, evaluate it against the served one, promote it if better.

Training and evaluation run inside the service (its ``Train`` and ``Evaluate`` RPCs, on its GPU);
the flow only decides. ``Train`` carries the ``admin`` token (``NIGHTSHIFT_AUTH_TOKEN_ADMIN``), ``Describe``
and ``Evaluate`` the ``infer`` one (:func:`nightshift.core.auth.token_for`). The new version is promoted
(made the registry's ``LATEST``, which services serve from their next start) only when it beats the version served before training on the
evaluation set by the task's headline metric; otherwise ``LATEST`` is put back on the served version.
"""

from __future__ import annotations

import dataclasses

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from nightshift.core.auth import token_for
from nightshift.core.client import TaskClient
from nightshift.core.registry import ModelRegistry
from nightshift.core.store import ObjectStore
from nightshift.orchestration.config import ServiceEndpoint
from nightshift.orchestration.nightly import describe_service
from nightshift.orchestration.retries import TRANSIENT_RETRY_OPTIONS
from nightshift.v1 import task_service_pb2

__all__ = ["TrainingOutcome", "train_and_promote", "is_better"]


@dataclasses.dataclass(frozen=True)
class TrainingOutcome:
    """What a training run gave: the versions compared, their scores on ``metric``, and whether the new one was promoted."""

    task: str
    metric: str
    served_version: str
    served_score: float
    trained_version: str
    trained_score: float
    promoted: bool


def is_better(candidate: float, incumbent: float, *, higher_is_better: bool, min_improvement: float = 0.0) -> bool:
    """Whether ``candidate`` beats ``incumbent`` by more than ``min_improvement`` (in the metric's unit)."""
    gain = candidate - incumbent if higher_is_better else incumbent - candidate
    return gain > min_improvement


@task(cache_policy=NO_CACHE)  # not retried: a training run costs hours of GPU, a failed one is looked at first
def train_model(endpoint: ServiceEndpoint, preset: str, dataset: str, seed: int, timeout_s: float) -> str:
    """Train through ``endpoint``'s ``Train`` and return the registered version."""
    logger = get_run_logger()
    request = task_service_pb2.TrainRequest(preset=preset, dataset=dataset, seed=seed)
    with TaskClient(endpoint.target, timeout_s=timeout_s, token=token_for("admin")) as client:
        for event in client.train(request):
            if event.HasField("progress"):
                logger.info("%s epoch %d/%d %s", endpoint.name, event.progress.epoch, event.progress.total_epochs,
                            dict(event.progress.metrics))
            else:
                return event.registered.model.version
    raise RuntimeError(f"{endpoint.name}: Train ended without registering a version")


@task(**TRANSIENT_RETRY_OPTIONS)
def evaluate_model(endpoint: ServiceEndpoint, dataset: str, version: str, seed: int, metric: str, timeout_s: float) -> float:
    """``metric`` of model ``version`` on ``dataset``, from ``endpoint``'s ``Evaluate``."""
    request = task_service_pb2.EvaluateRequest(dataset=dataset, model_version=version, seed=seed)
    with TaskClient(endpoint.target, timeout_s=timeout_s, token=token_for("infer")) as client:
        metrics = dict(client.evaluate(request).metrics)
    if metric not in metrics:
        raise KeyError(f"{endpoint.name}: Evaluate returned no {metric!r} (it returned {sorted(metrics)})")
    return metrics[metric]


@task(**TRANSIENT_RETRY_OPTIONS)
def promote_version(task_name: str, version: str) -> str:
    """Make ``version`` the served version of ``task_name`` in the registry; return it."""
    return ModelRegistry(ObjectStore.from_env(), task_name).promote(version).version


@flow(name="nightshift-train")
def train_and_promote(
    endpoint: ServiceEndpoint,
    metric: str,
    higher_is_better: bool = True,
    preset: str = "default",
    dataset: str = "simulated",
    evaluation_dataset: str = "simulated-test",
    seed: int = 0,
    min_improvement: float = 0.0,
    train_timeout_s: float = 6 * 3600.0,
    evaluate_timeout_s: float = 3600.0,
) -> TrainingOutcome:
    """Train a new version of ``endpoint``'s model, compare it with the served one on ``metric``, promote the better."""
    served = describe_service(endpoint)
    trained = train_model(endpoint, preset, dataset, seed, train_timeout_s)
    trained_score = evaluate_model(endpoint, evaluation_dataset, trained, seed, metric, evaluate_timeout_s)
    served_score = evaluate_model(endpoint, evaluation_dataset, served.model_version, seed, metric, evaluate_timeout_s)
    better = is_better(trained_score, served_score, higher_is_better=higher_is_better, min_improvement=min_improvement)
    promote_version(served.task, trained if better else served.model_version)
    return TrainingOutcome(served.task, metric, served.model_version, served_score, trained, trained_score, better)
