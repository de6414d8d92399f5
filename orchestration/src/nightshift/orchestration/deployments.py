"""Prefect deployments of the flows, and the Kubernetes work pool that runs them on GPU nodes.

- ``nightly``: the nightly flow on a cron schedule (the night defaults to the date the run starts, UTC);
- ``train-<service>``: the training flow of each science service, run on demand
  (``prefect deployment run nightshift-train/train-bubbles``) or on a schedule of its own.

:func:`kubernetes_job_template` is prefect-kubernetes' default base job template plus the variables a
GPU job needs (Prefect's default has none): a GPU count (the ``nvidia.com/gpu`` limit), a node
selector and tolerations, so a deployment asks for ``job_variables={"gpu_count": 1, ...}``.
"""

from __future__ import annotations

import copy
from typing import Any

from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron

from nightshift.orchestration.config import DEFAULT_NIGHTLY_CRON, NightConfig
from nightshift.orchestration.nightly import nightly
from nightshift.orchestration.training import train_and_promote

__all__ = ["DEFAULT_NIGHTLY_CRON", "HEADLINE_METRICS", "GPU_RESOURCE", "kubernetes_job_template", "flow_deployments"]

GPU_RESOURCE = "nvidia.com/gpu"

HEADLINE_METRICS: dict[str, tuple[str, bool]] = {
    "bubbles": ("detection_rate", True),
    "clusters": ("completeness", True),
    "filaments": ("dice", True),
    "ghosts": ("ap50", True),
    "inclination": ("rms_deg", False),
}
"""Each science task's headline metric (as the seeds name them) and whether higher is better."""

_GPU_VARIABLES: dict[str, dict[str, Any]] = {
    "gpu_count": {
        "title": "GPUs", "type": "integer", "minimum": 0, "default": 0,
        "description": f"GPUs the job's container requests ({GPU_RESOURCE} limit); 0 runs on CPU.",
    },
    "node_selector": {
        "title": "Node selector", "type": "object", "additionalProperties": {"type": "string"}, "default": {},
        "description": "Node labels the job's pod must match, e.g. {\"nvidia.com/gpu.product\": \"NVIDIA-H100-80GB-HBM3\"}.",
    },
    "tolerations": {
        "title": "Tolerations", "type": "array", "default": [],
        "items": {"type": "object", "properties": {
            "key": {"type": "string"}, "operator": {"type": "string", "enum": ["Exists", "Equal"]},
            "value": {"type": "string"}, "effect": {"type": "string", "enum": ["NoSchedule", "PreferNoSchedule", "NoExecute"]},
        }},
        "description": "Taints of GPU nodes the job's pod tolerates, e.g. [{\"key\": \"nvidia.com/gpu\", \"operator\": \"Exists\", \"effect\": \"NoSchedule\"}].",
    },
}


def kubernetes_job_template() -> dict[str, Any]:
    """prefect-kubernetes' default base job template with ``gpu_count``, ``node_selector`` and ``tolerations``.

    Also moves the Job's ``parallelism`` and ``completions`` out of the pod spec (where the
    default template has them) into the Job spec, so the rendered manifest passes strict validation.
    """
    from prefect_kubernetes.worker import KubernetesWorker

    template = copy.deepcopy(KubernetesWorker.get_default_base_job_template())
    template["variables"]["properties"].update(copy.deepcopy(_GPU_VARIABLES))
    job = template["job_configuration"]["job_manifest"]["spec"]
    pod = job["template"]["spec"]
    # The default puts the Job's parallelism and completions in the pod spec, where Kubernetes' strict schema rejects them.
    for field in ("parallelism", "completions"):
        job[field] = pod.pop(field)
    pod["nodeSelector"] = "{{ node_selector }}"
    pod["tolerations"] = "{{ tolerations }}"
    container = pod["containers"][0]
    container["resources"]["limits"][GPU_RESOURCE] = "{{ gpu_count }}"
    return template


def flow_deployments(config: NightConfig, *, nightly_cron: str = DEFAULT_NIGHTLY_CRON, timezone: str = "UTC",
                     job_variables: dict[str, Any] | None = None) -> list[RunnerDeployment]:
    """The nightly deployment (on ``nightly_cron``) and one training deployment per science service in ``config``.

    ``job_variables`` (e.g. ``{"gpu_count": 1}``) go to every deployment's work-pool job.
    """
    variables = job_variables or {}
    deployments = [
        nightly.to_deployment(
            name="nightly", schedule=Cron(nightly_cron, timezone=timezone), parameters={"config": config.model_dump(mode="json")},
            job_variables=variables, description="Ingest the night's raw files and run every science service on the tiles.",
        )
    ]
    for endpoint in config.services:
        if endpoint.name not in HEADLINE_METRICS:
            continue  # data-quality services have nothing to train
        metric, higher_is_better = HEADLINE_METRICS[endpoint.name]
        deployments.append(train_and_promote.to_deployment(
            name=f"train-{endpoint.name}", job_variables=variables,
            parameters={"endpoint": endpoint.model_dump(mode="json"), "metric": metric, "higher_is_better": higher_is_better},
            description=f"Train {endpoint.name}, evaluate against the served model on {metric}, promote the better.",
        ))
    return deployments
