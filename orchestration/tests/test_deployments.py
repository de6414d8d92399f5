"""The Kubernetes work-pool template (GPU, node selector, tolerations) and the deployments."""

from __future__ import annotations

from kubernetes_validate import validate
from prefect.utilities.templating import apply_values

from nightshift.orchestration.config import NightConfig, ServiceEndpoint
from nightshift.orchestration.deployments import GPU_RESOURCE, flow_deployments, kubernetes_job_template
from nightshift.orchestration.simulate import SIMULATED_SURVEYS


def test_gpu_job_renders_to_a_valid_kubernetes_job() -> None:
    template = kubernetes_job_template()
    variables = template["variables"]["properties"]
    assert {"gpu_count", "node_selector", "tolerations"} <= set(variables)
    values = {name: spec.get("default") for name, spec in variables.items()}
    toleration = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
    values.update(gpu_count=1, node_selector={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}, tolerations=[toleration],
                  image="nightshift:dev", name="nightly", command=["prefect", "flow-run", "execute"], namespace="nightshift",
                  env=[{"name": "DO_NOT_TRACK", "value": "1"}], labels={}, annotations={},
                  cpu_request="2", cpu_limit="4", memory_request="8Gi", memory_limit="16Gi")
    manifest = apply_values(template["job_configuration"]["job_manifest"], values)
    pod = manifest["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"][GPU_RESOURCE] == 1
    assert pod["tolerations"] == [toleration]
    assert toleration["operator"] in variables["tolerations"]["items"]["properties"]["operator"]["enum"]
    manifest["metadata"]["name"] = "nightly-1"
    validate(manifest, "1.32.0", strict=True)  # raises on a wrong type or a misspelled field


def test_nightly_runs_on_cron_and_each_science_service_gets_a_training_deployment() -> None:
    config = NightConfig(surveys=SIMULATED_SURVEYS, ingest_target="ingest:50051",
                         services=(ServiceEndpoint(name="bubbles", target="bubbles:50051"),
                                   ServiceEndpoint(name="tilestats-glimpse", target="tilestats:50051")))
    nightly, *training = flow_deployments(config, nightly_cron="30 19 * * *", job_variables={"gpu_count": 1})
    assert nightly.name == "nightly" and nightly.schedules[0].schedule.cron == "30 19 * * *"
    assert nightly.schedules[0].schedule.timezone == "UTC"
    assert NightConfig.model_validate(nightly.parameters["config"]) == config
    assert [d.name for d in training] == ["train-bubbles"]
    assert training[0].parameters["metric"] == "detection_rate" and training[0].job_variables == {"gpu_count": 1}
