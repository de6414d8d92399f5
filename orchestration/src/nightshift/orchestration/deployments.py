"""Prefect deployments of the flows, and the Kubernetes work pool's job template that runs them.

- ``nightly``: the nightly flow on a cron schedule (the night defaults to the date the run starts, UTC);
- ``train-<service>``: the training flow of each science service, run on demand
  (``prefect deployment run nightshift-train/train-bubbles``) or on a schedule of its own.

Every deployment's entrypoint is a module path (``nightshift.orchestration.nightly.nightly``) with
no storage and no pull steps: a flow run imports the flow from the installed package, so it starts
in any directory (a Kubernetes Job's is ``/``) and copies nothing. Deployments served from a process
(``nightshift serve``) carry the suffix ``-served`` (``nightly-served``), so serving them and
deploying them to a work pool (``nightshift deploy``) never replace each other.

:func:`base_job_template` is the work pool's job template, the same file as
``deploy/k8s/base/work-pool/base-job-template.json`` (a test keeps them identical): Prefect's
Kubernetes defaults plus a GPU count (the ``nvidia.com/gpu`` request and limit), a node selector and
tolerations, in the namespace ``nightshift``, with the configuration and object-store credentials
(``envFrom``) and the label ``nightshift.io/role: flow`` the NetworkPolicies admit to the services.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron
from prefect.types.entrypoint import EntrypointType

from nightshift.orchestration.config import DEFAULT_NIGHTLY_CRON, NightConfig
from nightshift.orchestration.nightly import nightly
from nightshift.orchestration.training import train_and_promote

__all__ = ["DEFAULT_NIGHTLY_CRON", "HEADLINE_METRICS", "GPU_RESOURCE", "SERVED_SUFFIX", "BASE_JOB_TEMPLATE",
           "base_job_template", "flow_deployments"]

GPU_RESOURCE = "nvidia.com/gpu"

SERVED_SUFFIX = "-served"
"""Suffix of the names of served deployments (``nightshift serve``): ``nightly-served``, ``train-bubbles-served``."""

BASE_JOB_TEMPLATE = "base-job-template.json"
"""The job template's file name, in this package and in ``deploy/k8s/base/work-pool/``."""

HEADLINE_METRICS: dict[str, tuple[str, bool]] = {
    "bubbles": ("detection_rate", True),
    "clusters": ("completeness", True),
    "filaments": ("dice", True),
    "ghosts": ("ap50", True),
    "inclination": ("rms_deg", False),
}
"""Each science task's headline metric (as the seeds name them) and whether higher is better."""


def base_job_template() -> dict[str, Any]:
    """The Kubernetes work pool's base job template (``gpu_count``, ``node_selector``, ``tolerations`` among its variables)."""
    return json.loads(resources.files(__package__).joinpath(BASE_JOB_TEMPLATE).read_text())


def flow_deployments(config: NightConfig, *, nightly_cron: str = DEFAULT_NIGHTLY_CRON, timezone: str = "UTC",
                     job_variables: dict[str, Any] | None = None, served: bool = False) -> list[RunnerDeployment]:
    """The nightly deployment (on ``nightly_cron``) and one training deployment per science service in ``config``.

    ``job_variables`` (e.g. ``{"gpu_count": 1}``) go to every deployment's work-pool job. ``served``
    names the deployments for ``nightshift serve`` (suffix :data:`SERVED_SUFFIX`).
    """
    variables = job_variables or {}
    suffix = SERVED_SUFFIX if served else ""
    deployments = [
        nightly.to_deployment(
            name=f"nightly{suffix}", schedule=Cron(nightly_cron, timezone=timezone), parameters={"config": config.model_dump(mode="json")},
            job_variables=variables, entrypoint_type=EntrypointType.MODULE_PATH,
            description="Ingest the night's raw files and run every science service on the tiles.",
        )
    ]
    for endpoint in config.services:
        if endpoint.name not in HEADLINE_METRICS:
            continue  # data-quality services have nothing to train
        metric, higher_is_better = HEADLINE_METRICS[endpoint.name]
        deployments.append(train_and_promote.to_deployment(
            name=f"train-{endpoint.name}{suffix}", job_variables=variables, entrypoint_type=EntrypointType.MODULE_PATH,
            parameters={"endpoint": endpoint.model_dump(mode="json"), "metric": metric, "higher_is_better": higher_is_better},
            description=f"Train {endpoint.name}, evaluate against the served model on {metric}, promote the better.",
        ))
    return deployments
