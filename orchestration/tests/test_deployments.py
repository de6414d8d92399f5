"""The Kubernetes work-pool template (GPU, node selector, tolerations) and the deployments."""

from __future__ import annotations

from pathlib import Path

from kubernetes_validate import validate
from prefect.utilities.templating import apply_values

from nightshift.orchestration.config import NightConfig, ServiceEndpoint
from nightshift.orchestration.deployments import (BASE_JOB_TEMPLATE, GPU_RESOURCE, SERVED_SUFFIX, base_job_template,
                                                  flow_deployments)
from nightshift.orchestration.simulate import SIMULATED_SURVEYS

MANIFESTS_TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "base" / "work-pool" / BASE_JOB_TEMPLATE

CONFIG = NightConfig(surveys=SIMULATED_SURVEYS, ingest_target="ingest:50051",
                     services=(ServiceEndpoint(name="bubbles", target="bubbles:50051"),
                               ServiceEndpoint(name="tilestats-glimpse", target="tilestats:50051")))


def test_the_packaged_job_template_is_the_manifests_one() -> None:
    # One template: the worker in Kubernetes creates the pool from the manifests' copy, `nightshift deploy` from this one.
    packaged = Path(__file__).resolve().parents[1] / "src" / "nightshift" / "orchestration" / BASE_JOB_TEMPLATE
    assert packaged.read_bytes() == MANIFESTS_TEMPLATE.read_bytes()


def test_gpu_job_renders_to_a_valid_kubernetes_job_in_the_namespace_with_config_and_credentials() -> None:
    template = base_job_template()
    variables = template["variables"]["properties"]
    assert {"gpu_count", "node_selector", "tolerations"} <= set(variables)
    values = {name: spec.get("default") for name, spec in variables.items()}
    toleration = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
    values.update(gpu_count=1, node_selector={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}, tolerations=[toleration],
                  name="nightly", command=["prefect", "flow-run", "execute"], env=[{"name": "DO_NOT_TRACK", "value": "1"}],
                  labels={}, annotations={})
    manifest = apply_values(template["job_configuration"]["job_manifest"], values)
    assert manifest["metadata"]["namespace"] == "nightshift"
    pod_template = manifest["spec"]["template"]
    assert pod_template["metadata"]["labels"]["nightshift.io/role"] == "flow"  # the NetworkPolicies admit these to the services
    pod = pod_template["spec"]
    (container,) = pod["containers"]
    assert container["envFrom"] == [{"configMapRef": {"name": "nightshift-config"}}, {"secretRef": {"name": "nightshift-s3-flow"}},
                                    {"secretRef": {"name": "nightshift-flow-tokens"}}]
    assert container["resources"]["limits"][GPU_RESOURCE] == 1
    assert pod["tolerations"] == [toleration]
    assert toleration["operator"] in variables["tolerations"]["items"]["properties"]["operator"]["enum"]
    # Prefect insists on these two in the pod spec (its default template's layout); the API server drops them.
    assert {pod.pop(k) for k in ("completions", "parallelism")} == {1}
    manifest["metadata"]["name"] = "nightly-1"
    validate(manifest, "1.32.0", strict=True)  # raises on a wrong type or a misspelled field


def test_nightly_runs_on_cron_and_each_science_service_gets_a_training_deployment() -> None:
    nightly, *training = flow_deployments(CONFIG, nightly_cron="30 19 * * *", job_variables={"gpu_count": 1})
    assert nightly.name == "nightly" and nightly.schedules[0].schedule.cron == "30 19 * * *"
    assert nightly.schedules[0].schedule.timezone == "UTC"
    assert NightConfig.model_validate(nightly.parameters["config"]) == CONFIG
    assert [d.name for d in training] == ["train-bubbles"]
    assert training[0].parameters["metric"] == "detection_rate" and training[0].job_variables == {"gpu_count": 1}


def test_deployments_import_the_flows_from_the_installed_package() -> None:
    # Module paths, not file paths relative to the caller's directory (test_cli checks the stored deployment has no path).
    nightly, training = flow_deployments(CONFIG)
    assert nightly.entrypoint == "nightshift.orchestration.nightly.nightly" and nightly.storage is None
    assert training.entrypoint == "nightshift.orchestration.training.train_and_promote" and training.storage is None


def test_served_deployments_have_names_of_their_own() -> None:
    served = [d.name for d in flow_deployments(CONFIG, served=True)]
    assert served == [f"nightly{SERVED_SUFFIX}", f"train-bubbles{SERVED_SUFFIX}"]
    assert not set(served) & {d.name for d in flow_deployments(CONFIG)}
