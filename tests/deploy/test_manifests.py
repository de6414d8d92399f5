"""The rendered overlays are valid Kubernetes objects that follow the deployment's policies (issue 10).

Everything is checked on what ``kubectl apply -k deploy/k8s/overlays/<overlay>`` would apply, rendered
by ``kubectl kustomize``, plus the flow-run Job that the Prefect worker makes from the work-pool template.
"""

from __future__ import annotations

import base64
import contextlib
import fnmatch
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from kubernetes_validate import utils as kubernetes_validate

from nightshift.core.auth import ROLES, role_token_env
from nightshift.core.children import end_with_parent, stop_child
from nightshift.core.s3server import free_port

REPO = Path(__file__).resolve().parents[2]
OVERLAYS = ("dev", "gpu")

KUBERNETES_VERSION = "1.32.0"
SCIENCE_SERVICES = ("bubbles", "clusters", "filaments", "ghosts", "inclination")
GRPC_SERVICES = ("ingest", *SCIENCE_SERVICES)
READINESS_SERVICE = {"ingest": "nightshift.v1.IngestService", **dict.fromkeys(SCIENCE_SERVICES, "nightshift.v1.TaskService")}
LIVENESS_SERVICE = "liveness"  # nightshift.core.server.LIVENESS
# The taint the README tells operators to put on the GPU node pool.
GPU_POOL_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
GPU_NODE_LABELS = {"nvidia.com/gpu.present": "true"}
WORK_POOL_TEMPLATE = REPO / "deploy" / "k8s" / "base" / "work-pool" / "base-job-template.json"
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "Job"}
LONG_RUNNING_KINDS = {"Deployment", "StatefulSet"}
KEDA_API = "keda.sh/v1alpha1"
CERT_MANAGER_API = "cert-manager.io/v1"
# What a cert-manager Certificate's Secret holds (the CA issuer adds its own certificate as ca.crt).
ISSUED_SECRET_KEYS = {"tls.crt", "tls.key", "ca.crt"}
CA_SECRET = "nightshift-ca"
AUTOSCALER_KINDS = {"HorizontalPodAutoscaler", "ScaledObject"}

Object = dict[str, Any]


# --- helpers --------------------------------------------------------------------------------------

def by_kind(objects: list[Object], kind: str) -> dict[str, Object]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def config(objects: list[Object]) -> dict[str, str]:
    return by_kind(objects, "ConfigMap")["nightshift-config"]["data"]


def fill_prefect_template(node: Any, values: Mapping[str, Any]) -> Any:
    """Prefect's templating of a base job template: a value that is exactly ``{{ name }}`` becomes the
    variable (its type kept) and disappears when the variable is unset or null; other strings are
    formatted. (Checked against prefect-kubernetes 0.8 when the template was written.)"""
    if isinstance(node, dict):
        filled = {k: fill_prefect_template(v, values) for k, v in node.items()}
        return {k: v for k, v in filled.items() if v is not None}
    if isinstance(node, list):
        return [fill_prefect_template(v, values) for v in node]
    if isinstance(node, str):
        whole = re.fullmatch(r"\{\{\s*(\w+)\s*\}\}", node)
        if whole:
            return values.get(whole.group(1))
        return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: str(values.get(m.group(1), "")), node)
    return node


def flow_run_job(**variables: Any) -> Object:
    """The Job the Prefect worker creates for a flow run with these job variables."""
    template = json.loads(WORK_POOL_TEMPLATE.read_text())
    defaults = {k: v["default"] for k, v in template["variables"]["properties"].items() if "default" in v}
    job = fill_prefect_template(template["job_configuration"]["job_manifest"], {**defaults, "name": "nightly", **variables})
    job["metadata"]["name"] = job["metadata"].pop("generateName") + "x1"  # the API server's part
    return job


GPU_FLOW_VARIABLES = {"gpu_count": 1, "node_selector": GPU_NODE_LABELS,
                      "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]}


def workloads(objects: list[Object]) -> Iterator[tuple[Object, Object]]:
    """(workload, pod template) of every workload, the flow-run Job included."""
    for obj in [*objects, flow_run_job()]:
        if obj["kind"] in WORKLOAD_KINDS:
            yield obj, obj["spec"]["template"]


def containers(pod_template: Object) -> list[Object]:
    return pod_template["spec"].get("initContainers", []) + pod_template["spec"]["containers"]


def environment(objects: list[Object], container: Object) -> dict[str, str]:
    """A container's plain environment: its ConfigMaps' data (envFrom), then its own ``value`` entries."""
    config_maps = by_kind(objects, "ConfigMap")
    env = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env |= config_maps[source["configMapRef"]["name"]]["data"]
    return env | {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def mounted_secret_key(pod: Object, container: Object, path: str) -> tuple[str, str] | None:
    """(Secret, key) whose value the file ``path`` holds in the container, through a secret or projected volume."""
    volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        relative = os.path.relpath(path, mount["mountPath"])
        if relative.startswith(".."):
            continue
        volume = volumes[mount["name"]]
        sources = ([{"secret": {"name": volume["secret"]["secretName"], "items": volume["secret"].get("items")}}] if "secret" in volume
                   else volume.get("projected", {}).get("sources", []))
        for source in (s["secret"] for s in sources if "secret" in s):
            for item in source.get("items") or [{"key": relative, "path": relative}]:
                if item["path"] == relative:
                    return source["name"], item["key"]
    return None


def certificates(objects: list[Object]) -> dict[str, Object]:
    """cert-manager Certificates by the Secret each one fills."""
    return {c["spec"]["secretName"]: c for c in objects if c["kind"] == "Certificate" and c["apiVersion"] == CERT_MANAGER_API}


def selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels and matchExpressions) applied to labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        if not {"In": key in labels and labels[key] in values, "NotIn": labels.get(key) not in values,
                "Exists": key in labels, "DoesNotExist": key not in labels}[operator]:
            return False
    return True


def tolerates(tolerations: list[Object], taint: Mapping[str, str]) -> bool:
    """Kubernetes' toleration matching (an operator other than Exists/Equal tolerates nothing)."""
    for t in tolerations:
        operator = t.get("operator", "Equal")
        key_matches = t.get("key") == taint["key"] or (not t.get("key") and operator == "Exists")
        value_matches = operator == "Exists" or (operator == "Equal" and t.get("value") == taint["value"])
        if key_matches and value_matches and t.get("effect") in (None, "", taint["effect"]):
            return True
    return False


def ingress_allowed(objects: list[Object], source_labels: Mapping[str, str], target: Object, port: int) -> bool:
    """Whether a pod in the namespace with source_labels may open ``port`` on the target pod template."""
    target_labels = target["metadata"]["labels"]
    policies = [p for p in by_kind(objects, "NetworkPolicy").values()
                if "Ingress" in p["spec"]["policyTypes"] and selector_matches(p["spec"]["podSelector"], target_labels)]
    if not policies:
        return True
    named_ports = {p["name"]: p["containerPort"] for c in target["spec"]["containers"] for p in c.get("ports", [])}
    for policy in policies:
        for rule in policy["spec"].get("ingress", []):
            # A peer with a namespaceSelector admits other namespaces' pods, never this namespace's by itself.
            peer_ok = any("namespaceSelector" not in peer and selector_matches(peer["podSelector"], source_labels)
                          for peer in rule.get("from", []))
            port_ok = any(named_ports.get(p["port"], p["port"]) == port for p in rule.get("ports", []))
            if peer_ok and port_ok:
                return True
    return False


# --- validity -------------------------------------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_strictly(rendered: dict[str, list[Object]], overlay: str) -> None:
    errors = []
    for obj in rendered[overlay]:
        # CRDs without a bundled schema, checked field by field instead: KEDA's in
        # test_gpu_services_scale_on_in_flight_calls_to_zero_outside_the_night, cert-manager's in test_certificates_*
        if obj["apiVersion"] in (KEDA_API, CERT_MANAGER_API):
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {'.'.join(map(str, e.path))}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:  # a CRD or a typo in apiVersion: no schema, no check
            errors.append(e.message)
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("variables", [{}, GPU_FLOW_VARIABLES], ids=["cpu-flow", "gpu-flow"])
def test_flow_run_job_validates_strictly(variables: dict[str, Any]) -> None:
    job = flow_run_job(**variables)
    # Prefect insists on these two in the pod spec (its default template's layout); the API server drops them.
    assert {job["spec"]["template"]["spec"].pop(k) for k in ("completions", "parallelism")} == {1}
    kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True)


def test_both_overlays_render_the_same_objects(rendered: dict[str, list[Object]]) -> None:
    assert tuple(rendered) == OVERLAYS
    names = {overlay: sorted((o["kind"], o["metadata"]["name"]) for o in objects if o["kind"] not in AUTOSCALER_KINDS)
             for overlay, objects in rendered.items()}
    assert names["dev"] == names["gpu"]  # the autoscalers differ: test_autoscalers_and_disruption_budgets_target_the_services
    assert {n for k, n in names["dev"] if k == "Deployment"} >= {*GRPC_SERVICES, "prefect-server", "prefect-worker"}
    assert {n for k, n in names["dev"] if k == "StatefulSet"} == {"minio", "postgres"}


# --- containers -----------------------------------------------------------------------------------

def hardening_problems(workload: Object, pod: Object) -> list[str]:
    """What a workload's pod lacks of the deployment's container policy (bounded, hardened, pinned, probed)."""
    problems = []
    where = f"{workload['kind']}/{workload['metadata']['name']}"
    pod_security = pod["spec"].get("securityContext", {})
    if not (pod_security.get("runAsNonRoot") and pod_security.get("runAsUser", 0) > 0):
        problems.append(f"{where}: pod must set runAsNonRoot and a non-zero runAsUser")
    if pod_security.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problems.append(f"{where}: pod must use the RuntimeDefault seccomp profile")
    for c in containers(pod):
        name = f"{where} container {c['name']}"
        resources = c.get("resources", {})
        for kind in ("requests", "limits"):
            if not {"cpu", "memory"} <= set(resources.get(kind, {})):
                problems.append(f"{name}: needs cpu and memory {kind}")
        security = c.get("securityContext", {})
        if security.get("allowPrivilegeEscalation") is not False or security.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}: needs allowPrivilegeEscalation false and readOnlyRootFilesystem true")
        if security.get("capabilities", {}).get("drop") != ["ALL"] or security.get("privileged"):
            problems.append(f"{name}: must drop ALL capabilities and not be privileged")
        image = c["image"]
        tag = image.rsplit("/", 1)[-1].partition(":")[2]
        if "@sha256:" not in image and (not tag or tag == "latest"):
            problems.append(f"{name}: image {image} needs a pinned tag or digest (not latest)")
        if workload["kind"] in LONG_RUNNING_KINDS and not {"livenessProbe", "readinessProbe"} <= set(c):
            problems.append(f"{name}: needs liveness and readiness probes")
    return problems


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_is_bounded_hardened_and_pinned(rendered: dict[str, list[Object]], overlay: str) -> None:
    problems = [p for workload, pod in workloads(rendered[overlay]) for p in hardening_problems(workload, pod)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_credential_in_plain_text(rendered: dict[str, list[Object]], overlay: str) -> None:
    credential = re.compile(r"PASSWORD|SECRET|ACCESS_KEY|TOKEN|CREDENTIAL", re.IGNORECASE)
    for obj in rendered[overlay]:
        if obj["kind"] == "ConfigMap":
            assert not [k for k in obj["data"] if credential.search(k)], f"credential in ConfigMap {obj['metadata']['name']}"
    # a value naming a Secret or one of its keys (the Prefect worker's API_AUTH_STRING_SECRET_NAME/_KEY) is no credential
    secrets = by_kind(rendered[overlay], "Secret")
    references = {*secrets, *(key for secret in secrets.values() for key in secret["data"])}
    for workload, pod in workloads(rendered[overlay]):
        for c in containers(pod):
            plain = [e["name"] for e in c.get("env", [])
                     if credential.search(e["name"]) and "value" in e and e["value"] not in references]
            assert not plain, f"{workload['metadata']['name']}: {plain} must come from a Secret"


def test_secrets_are_generated_from_files_kept_out_of_git() -> None:
    secrets_dir = REPO / "deploy" / "k8s" / "base" / "secrets"
    for example in secrets_dir.glob("*.env.example"):
        real = example.with_name(example.name.removesuffix(".example"))
        ignore = (secrets_dir / ".gitignore").read_text().split()
        assert any(real.match(pattern) for pattern in ignore), f"{real.name} must be gitignored"
    for path in (REPO / "deploy" / "k8s").rglob("*.yaml"):
        assert "kind: Secret" not in path.read_text(), f"{path}: Secrets come from secretGenerator, never from a manifest"


# --- references -----------------------------------------------------------------------------------

def unresolved_references(objects: list[Object], workload: Object, pod: Object) -> list[str]:
    """The ConfigMaps, Secrets, keys and ServiceAccount a workload's pod names that ``objects`` do not hold."""
    data = {(o["kind"], o["metadata"]["name"]): set(o.get("data", {})) for o in objects if o["kind"] in ("ConfigMap", "Secret")}
    data |= {("Secret", name): ISSUED_SECRET_KEYS for name in certificates(objects)}  # made by cert-manager
    service_accounts = set(by_kind(objects, "ServiceAccount"))
    missing = []
    where = f"{workload['kind']}/{workload['metadata']['name']}"
    refs: list[tuple[str, str, str | None]] = []
    for c in containers(pod):
        for source in c.get("envFrom", []):
            refs += [("ConfigMap", source["configMapRef"]["name"], None)] if "configMapRef" in source else []
            refs += [("Secret", source["secretRef"]["name"], None)] if "secretRef" in source else []
        for env in c.get("env", []):
            value_from = env.get("valueFrom", {})
            for field, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
                if field in value_from:
                    refs.append((kind, value_from[field]["name"], value_from[field]["key"]))
    for volume in pod["spec"].get("volumes", []):
        refs += [("ConfigMap", volume["configMap"]["name"], None)] if "configMap" in volume else []
        if "secret" in volume:
            sources = [{"name": volume["secret"]["secretName"], "items": volume["secret"].get("items")}]
        else:
            sources = [s["secret"] for s in volume.get("projected", {}).get("sources", []) if "secret" in s]
        for source in sources:
            refs += [("Secret", source["name"], item["key"]) for item in source["items"] or [{"key": None}]]
    for kind, name, key in refs:
        if (kind, name) not in data:
            missing.append(f"{where}: {kind} {name} does not exist")
        elif key is not None and key not in data[kind, name]:
            missing.append(f"{where}: {kind} {name} has no key {key}")
    account = pod["spec"].get("serviceAccountName")
    if account and account not in service_accounts:
        missing.append(f"{where}: ServiceAccount {account} does not exist")
    return missing


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_config_and_secret_reference_resolves(rendered: dict[str, list[Object]], overlay: str) -> None:
    objects = rendered[overlay]
    missing = [m for workload, pod in workloads(objects) for m in unresolved_references(objects, workload, pod)]
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_select_pods_and_their_ports(rendered: dict[str, list[Object]], overlay: str) -> None:
    objects = rendered[overlay]
    pods = [pod for _, pod in workloads(objects)]
    for name, service in by_kind(objects, "Service").items():
        selected = [p for p in pods if selector_matches({"matchLabels": service["spec"]["selector"]}, p["metadata"]["labels"])]
        assert len(selected) == 1, f"Service {name} selects {len(selected)} pod templates"
        container_ports = {p["name"]: p["containerPort"] for c in selected[0]["spec"]["containers"] for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in container_ports, f"Service {name}: no container port named {port['targetPort']}"
            assert container_ports[port["targetPort"]] == port["port"], f"Service {name}: port {port['name']} differs"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_autoscalers_and_disruption_budgets_target_the_services(rendered: dict[str, list[Object]], overlay: str) -> None:
    objects = rendered[overlay]
    deployments = by_kind(objects, "Deployment")
    autoscalers, budgets = by_kind(objects, "HorizontalPodAutoscaler"), by_kind(objects, "PodDisruptionBudget")
    scaled = by_kind(objects, "ScaledObject")
    # The GPU overlay's science services are scaled by KEDA (to zero outside the night), the rest on CPU.
    assert set(scaled) == (set(SCIENCE_SERVICES) if overlay == "gpu" else set())
    assert set(autoscalers) == set(GRPC_SERVICES) - set(scaled) and set(budgets) == set(GRPC_SERVICES)
    for name, hpa in autoscalers.items():
        target = hpa["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", name) and name in deployments
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        assert "replicas" not in deployments[name]["spec"], f"{name}: the HPA owns the replica count"
    for name, pdb in budgets.items():
        matched = [d for d, dep in deployments.items()
                   if selector_matches(pdb["spec"]["selector"], dep["spec"]["template"]["metadata"]["labels"])]
        assert matched == [name], f"PodDisruptionBudget {name} matches {matched}"
        assert "maxUnavailable" in pdb["spec"], f"{name}: minAvailable would block draining a single replica"


def test_gpu_services_scale_on_in_flight_calls_to_zero_outside_the_night(rendered: dict[str, list[Object]]) -> None:
    from nightshift.core.metrics import ServiceMetrics
    from nightshift.orchestration.config import DEFAULT_NIGHTLY_CRON

    exported = {metric.name for metric in ServiceMetrics().registry.collect()}
    objects = rendered["gpu"]
    deployments = by_kind(objects, "Deployment")
    nightly_minute, nightly_hour = map(int, DEFAULT_NIGHTLY_CRON.split()[:2])
    for name, scaled in by_kind(objects, "ScaledObject").items():
        assert scaled["apiVersion"] == KEDA_API and scaled["metadata"]["namespace"] == "nightshift"
        spec = scaled["spec"]
        assert spec["scaleTargetRef"] == {"name": name} and name in deployments
        assert spec["minReplicaCount"] == 0 < spec["maxReplicaCount"] and "replicas" not in deployments[name]["spec"]
        triggers = {t["type"]: t["metadata"] for t in spec["triggers"]}
        assert set(triggers) == {"prometheus", "cron"}
        query = triggers["prometheus"]["query"]
        metric, selector = re.fullmatch(r"sum\((\w+)\{(.*)\}\)", query).groups()
        assert metric in exported, f"{name}: {metric} is not a metric the service exports"
        labels = dict(re.findall(r'(\w+)="([^"]*)"', selector))
        pod_labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert labels["app_kubernetes_io_name"] == pod_labels["app.kubernetes.io/name"] == name  # Prometheus' labelmap of pod labels
        assert float(triggers["prometheus"]["threshold"]) > 0 and triggers["prometheus"]["serverAddress"].startswith("http")
        # one replica comes up before the nightly run starts, so its first calls do not wait for a cold GPU node
        start_minute, start_hour = map(int, triggers["cron"]["start"].split()[:2])
        assert 0 < (nightly_hour * 60 + nightly_minute) - (start_hour * 60 + start_minute) <= 120
        assert int(triggers["cron"]["desiredReplicas"]) >= 1 and triggers["cron"]["timezone"] == "UTC"


# --- the gRPC services ----------------------------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", GRPC_SERVICES)
def test_grpc_service_agrees_with_its_configuration(rendered: dict[str, list[Object]], overlay: str, service: str) -> None:
    objects = rendered[overlay]
    settings = config(objects)
    grpc_port, metrics_port = int(settings["NIGHTSHIFT_GRPC_PORT"]), int(settings["NIGHTSHIFT_METRICS_PORT"])
    health_port = int(settings["NIGHTSHIFT_GRPC_HEALTH_PORT"])
    pod = by_kind(objects, "Deployment")[service]["spec"]["template"]
    (container,) = pod["spec"]["containers"]

    assert container["envFrom"] == [{"configMapRef": {"name": "nightshift-config"}}, {"secretRef": {"name": "nightshift-auth"}}]
    s3_keys = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if e["name"].startswith("NIGHTSHIFT_S3_")}
    assert s3_keys == {k: {"name": f"nightshift-s3-{service}", "key": k} for k in ("NIGHTSHIFT_S3_ACCESS_KEY", "NIGHTSHIFT_S3_SECRET_KEY")}
    assert settings["NIGHTSHIFT_GRPC_HOST"] == "0.0.0.0"
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"grpc": grpc_port, "health": health_port, "metrics": metrics_port}
    # The kubelet's gRPC probes speak plaintext only: they ask the health port, the gRPC port is TLS-only.
    assert container["livenessProbe"]["grpc"] == container["startupProbe"]["grpc"] == {"port": health_port, "service": LIVENESS_SERVICE}
    assert container["startupProbe"]["periodSeconds"] * container["startupProbe"]["failureThreshold"] >= 120  # a cold node's imports
    assert container["readinessProbe"]["grpc"] == {"port": health_port, "service": READINESS_SERVICE[service]}
    assert pod["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true", "prometheus.io/port": str(metrics_port), "prometheus.io/path": "/metrics"}
    assert container["image"].rsplit("/", 1)[-1].split(":")[0] == f"nightshift-{service}"

    # Endpoints drop the pod during preStop, then the server drains for GRACE_S, all before SIGKILL.
    drain_s = container["lifecycle"]["preStop"]["sleep"]["seconds"] + float(settings["NIGHTSHIFT_GRPC_GRACE_S"])
    assert pod["spec"]["terminationGracePeriodSeconds"] > drain_s

    headless = by_kind(objects, "Service")[service]
    assert headless["spec"]["clusterIP"] == "None", "gRPC needs a headless Service to balance across pods"
    assert {p["name"]: p["port"] for p in headless["spec"]["ports"]} == {"grpc": grpc_port, "metrics": metrics_port}


# --- TLS ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_certificates_are_issued_by_the_namespace_ca_for_the_names_clients_dial(rendered: dict[str, list[Object]], overlay: str) -> None:
    objects = rendered[overlay]
    issuers = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "Issuer" and o["apiVersion"] == CERT_MANAGER_API}
    issued = certificates(objects)
    ca = issued.pop(CA_SECRET)["spec"]
    assert ca["isCA"] is True and issuers[ca["issuerRef"]["name"]] == {"selfSigned": {}}
    assert issuers[CA_SECRET] == {"ca": {"secretName": CA_SECRET}}
    services = by_kind(objects, "Service")
    assert set(issued) == {f"{name}-tls" for name in (*GRPC_SERVICES, "minio")}
    for secret, certificate in issued.items():
        spec, name = certificate["spec"], secret.removesuffix("-tls")
        assert certificate["metadata"]["namespace"] == "nightshift" and name in services
        assert spec["issuerRef"] == {"group": "cert-manager.io", "kind": "Issuer", "name": CA_SECRET}, secret
        # clients dial dns:///<service>:<port> (night.example.json) and https://minio:9000: the name must be there
        assert set(spec["dnsNames"]) == {name, f"{name}.nightshift", f"{name}.nightshift.svc", f"{name}.nightshift.svc.cluster.local"}
        assert "server auth" in spec["usages"] and not spec.get("isCA")
        assert 0 < _hours(spec["renewBefore"]) < _hours(spec["duration"])


def _hours(duration: str) -> float:
    return float(re.fullmatch(r"(\d+)h", duration).group(1))


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", GRPC_SERVICES)
def test_every_grpc_service_serves_tls_with_its_own_certificate(rendered: dict[str, list[Object]], overlay: str, service: str) -> None:
    objects = rendered[overlay]
    pod = by_kind(objects, "Deployment")[service]["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    env = environment(objects, container)
    assert mounted_secret_key(pod, container, env["NIGHTSHIFT_GRPC_TLS_CERT"]) == (f"{service}-tls", "tls.crt")
    assert mounted_secret_key(pod, container, env["NIGHTSHIFT_GRPC_TLS_KEY"]) == (f"{service}-tls", "tls.key")
    assert f"{service}-tls" in certificates(objects)
    # the key is readable by the pod's group only, which the pod's fsGroup makes its own
    (tls,) = [v["secret"] for v in pod["spec"]["volumes"] if v.get("secret", {}).get("secretName") == f"{service}-tls"]
    assert tls["defaultMode"] == 0o440 and pod["spec"]["securityContext"]["fsGroup"] == pod["spec"]["securityContext"]["runAsGroup"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_client_verifies_tls_with_the_namespace_ca(rendered: dict[str, list[Object]], overlay: str) -> None:
    objects = rendered[overlay]
    assert config(objects)["NIGHTSHIFT_S3_ENDPOINT"].startswith("https://")
    s3_clients, grpc_clients, problems = set(), set(), []
    for workload, pod in workloads(objects):
        for c in containers(pod):
            where, env = f"{workload['kind']}/{workload['metadata']['name']}", environment(objects, c)
            refs = [s.get("secretRef", {}).get("name") for s in c.get("envFrom", [])]
            if "NIGHTSHIFT_S3_ENDPOINT" in env:
                s3_clients.add(workload["metadata"]["name"])
                if not env["NIGHTSHIFT_S3_ENDPOINT"].startswith("https://"):
                    problems.append(f"{where}: NIGHTSHIFT_S3_ENDPOINT {env['NIGHTSHIFT_S3_ENDPOINT']} is not https")
                if mounted_secret_key(pod, c, env.get("NIGHTSHIFT_S3_CA_BUNDLE", "")) != (CA_SECRET, "ca.crt"):
                    problems.append(f"{where}: NIGHTSHIFT_S3_CA_BUNDLE is not the mounted ca.crt of {CA_SECRET}")
            if "nightshift-flow-tokens" in refs:  # calls the gRPC services
                grpc_clients.add(workload["metadata"]["name"])
                if mounted_secret_key(pod, c, env.get("NIGHTSHIFT_GRPC_TLS_CA", "")) != (CA_SECRET, "ca.crt"):
                    problems.append(f"{where}: NIGHTSHIFT_GRPC_TLS_CA is not the mounted ca.crt of {CA_SECRET}")
        for volume in pod["spec"].get("volumes", []):  # the CA's key stays in its Secret
            sources = [{"name": volume["secret"]["secretName"], "items": volume["secret"].get("items")}] if "secret" in volume else \
                [s["secret"] for s in volume.get("projected", {}).get("sources", []) if "secret" in s]
            for source in (s for s in sources if s["name"] == CA_SECRET):
                if [item["key"] for item in source["items"] or [{"key": "all"}]] != ["ca.crt"]:
                    problems.append(f"{workload['metadata']['name']}: mounts more of {CA_SECRET} than ca.crt")
    assert not problems, "\n".join(problems)
    assert s3_clients == {*GRPC_SERVICES, "object-store-users", flow_run_job()["metadata"]["name"]}
    assert grpc_clients == {flow_run_job()["metadata"]["name"]}
    # mc (a Go program) reads the CA from SSL_CERT_FILE
    script = by_kind(objects, "ConfigMap")["object-store-users"]["data"]["users.sh"]
    assert "export SSL_CERT_FILE=$NIGHTSHIFT_S3_CA_BUNDLE\n" in script.split("mc() {")[0]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_minio_serves_https_with_its_certificate(rendered: dict[str, list[Object]], overlay: str) -> None:
    pod = by_kind(rendered[overlay], "StatefulSet")["minio"]["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    certs_dir = container["args"][container["args"].index("--certs-dir") + 1]
    assert mounted_secret_key(pod, container, f"{certs_dir}/public.crt") == ("minio-tls", "tls.crt")
    assert mounted_secret_key(pod, container, f"{certs_dir}/private.key") == ("minio-tls", "tls.key")
    assert mounted_secret_key(pod, container, f"{certs_dir}/CAs/nightshift-ca.crt") == (CA_SECRET, "ca.crt")
    assert container["livenessProbe"]["httpGet"]["scheme"] == container["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gpu_requests_only_where_the_overlay_gives_gpus(rendered: dict[str, list[Object]], overlay: str) -> None:
    for workload, pod in workloads(rendered[overlay]):
        name = workload["metadata"]["name"]
        wants_gpu = overlay == "gpu" and name in SCIENCE_SERVICES
        for c in containers(pod):
            requests, limits = c["resources"]["requests"], c["resources"]["limits"]
            gpus = limits.get("nvidia.com/gpu", 0)
            if not wants_gpu:
                assert not int(gpus), f"{overlay}: {name} must not ask for a GPU"
                continue
            assert re.fullmatch(r"[1-9][0-9]*", str(gpus)), f"{name}: nvidia.com/gpu must be a whole number, got {gpus!r}"
            assert requests.get("nvidia.com/gpu", gpus) == gpus, f"{name}: GPU request must equal the limit"
        spec = pod["spec"]
        if wants_gpu:
            assert tolerates(spec.get("tolerations", []), GPU_POOL_TAINT), f"{name} does not tolerate the GPU pool taint"
            assert spec.get("nodeSelector") == GPU_NODE_LABELS, f"{name} is not pinned to the GPU pool"
        else:
            assert not spec.get("nodeSelector"), f"{overlay}: {name} must not be pinned to GPU nodes"


def test_toleration_matching_refuses_bad_operators() -> None:
    assert tolerates([{"key": "nvidia.com/gpu", "operator": "Exists"}], GPU_POOL_TAINT)
    assert tolerates([{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}], GPU_POOL_TAINT)
    assert not tolerates([{"key": "nvidia.com/gpu", "operator": "Exist", "effect": "NoSchedule"}], GPU_POOL_TAINT)
    assert not tolerates([{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoExecute"}], GPU_POOL_TAINT)


# --- network, RBAC, work pool ----------------------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies(rendered: dict[str, list[Object]], overlay: str) -> None:
    objects = rendered[overlay]
    settings = config(objects)
    grpc_port = int(settings["NIGHTSHIFT_GRPC_PORT"])
    s3_port = int(settings["NIGHTSHIFT_S3_ENDPOINT"].rsplit(":", 1)[1])
    pods = {w["metadata"]["name"]: pod for w, pod in workloads(objects)}
    pods["flow-run"] = flow_run_job()["spec"]["template"]
    roles = {name: pod["metadata"]["labels"]["nightshift.io/role"] for name, pod in pods.items()}

    def reachable(target: str, port: int) -> set[str]:
        return {name for name, pod in pods.items() if ingress_allowed(objects, pod["metadata"]["labels"], pods[target], port)}

    assert reachable("minio", s3_port) == {n for n, r in roles.items() if r in ("flow", "service", "object-store-admin")}
    for service in GRPC_SERVICES:
        assert reachable(service, grpc_port) == {n for n, r in roles.items() if r == "flow"}
        assert reachable(service, int(settings["NIGHTSHIFT_GRPC_HEALTH_PORT"])) == set()  # the kubelet's, from its node
    assert reachable("prefect-server", 4200) == {n for n, r in roles.items() if r in ("flow", "prefect-worker")}
    assert reachable("postgres", 5432) == {"prefect-server"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_worker_may_only_run_jobs_in_its_namespace(rendered: dict[str, list[Object]], overlay: str) -> None:
    objects = rendered[overlay]
    assert not [o for o in objects if o["kind"] in ("ClusterRole", "ClusterRoleBinding")], "no cluster-wide RBAC"
    (role,) = by_kind(objects, "Role").values()
    (binding,) = by_kind(objects, "RoleBinding").values()
    worker = by_kind(objects, "Deployment")["prefect-worker"]["spec"]["template"]["spec"]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": worker["serviceAccountName"], "namespace": "nightshift"}]
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == "nightshift"
    writes = {"create", "update", "patch", "delete", "deletecollection", "*"}
    for rule in role["rules"]:
        assert "*" not in rule["resources"] + rule["apiGroups"], f"wildcard in {rule}"
        written = writes & set(rule["verbs"])
        if rule["apiGroups"] == ["batch"] and rule["resources"] == ["jobs"]:
            continue
        # kopf (the worker's observer) posts Events; nothing else may be written.
        assert written <= ({"create"} if rule["resources"] == ["events"] else set()), f"the worker may write {rule}"
    env = {e["name"]: e for e in worker["containers"][0]["env"]}
    assert env["PREFECT_INTEGRATIONS_KUBERNETES_OBSERVER_NAMESPACES"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    others = [w["metadata"]["name"] for w, pod in workloads(objects)
              if w["metadata"]["name"] != "prefect-worker" and pod["spec"].get("automountServiceAccountToken") is not False]
    assert not others, f"{others} need no Kubernetes API token"


def test_work_pool_template_adds_gpu_variables(rendered: dict[str, list[Object]]) -> None:
    template = json.loads(WORK_POOL_TEMPLATE.read_text())
    variables = template["variables"]["properties"]
    assert variables["gpu_count"]["type"] == "integer" and variables["gpu_count"]["minimum"] == 0
    assert variables["node_selector"]["type"] == "object" and variables["tolerations"]["type"] == "array"

    job = flow_run_job(**GPU_FLOW_VARIABLES)
    spec = job["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == container["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert spec["nodeSelector"] == GPU_NODE_LABELS and tolerates(spec["tolerations"], GPU_POOL_TAINT)
    assert job["metadata"]["namespace"] == "nightshift"
    cpu_job = flow_run_job()["spec"]["template"]["spec"]
    assert cpu_job["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 0 and cpu_job["nodeSelector"] == {}

    # The worker creates the pool "nightshift" from this very file, mounted from the generated ConfigMap.
    for overlay in OVERLAYS:
        objects = rendered[overlay]
        assert json.loads(by_kind(objects, "ConfigMap")["prefect-work-pool"]["data"]["base-job-template.json"]) == template
        worker = by_kind(objects, "Deployment")["prefect-worker"]["spec"]["template"]["spec"]["containers"][0]
        mount = next(m["mountPath"] for m in worker["volumeMounts"] if m["name"] == "work-pool")
        command = worker["command"]
        assert command[command.index("--base-job-template") + 1] == f"{mount}/base-job-template.json"
        assert command[command.index("--pool") + 1] == "nightshift"
        # Flow runs use the same orchestration image as the server and the worker.
        assert container["image"] == worker["image"]


# The cluster autoscaler gives up on a node that is not ready after --max-node-provision-time (15 min by
# default); a flow run's pod Pending that long must not be given up on by Prefect first.
GPU_NODE_PROVISION_S = 15 * 60


def test_a_flow_run_pod_may_wait_pending_while_a_gpu_node_scales_up() -> None:
    from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

    template = json.loads(WORK_POOL_TEMPLATE.read_text())
    defaults = {k: v["default"] for k, v in template["variables"]["properties"].items() if "default" in v}
    # What the pinned prefect-kubernetes makes of the template for a GPU flow run.
    filled = fill_prefect_template(template["job_configuration"], {**defaults, "name": "nightly", **GPU_FLOW_VARIABLES})
    configuration = KubernetesWorkerJobConfiguration.model_validate(filled)
    assert configuration.pod_watch_timeout_seconds > GPU_NODE_PROVISION_S
    assert configuration.job_watch_timeout_seconds is None  # no deadline on a running night either
    # prefect-kubernetes 0.8 no longer watches pods in the worker: its observer marks a run Crashed only when its
    # Job fails. So nothing may fail the Job of a Pending pod: no deadline on the Job or its pod.
    job = flow_run_job(**GPU_FLOW_VARIABLES)
    assert "activeDeadlineSeconds" not in job["spec"] and "activeDeadlineSeconds" not in job["spec"]["template"]["spec"]


def test_an_overlay_without_the_operators_credentials_is_refused_naming_the_missing_file(
    example_k8s: Path, kustomize: Callable[[Path], subprocess.CompletedProcess[str]]
) -> None:
    (example_k8s / "base" / "secrets" / "object-store.env").unlink()
    result = kustomize(example_k8s / "overlays" / "gpu")
    assert result.returncode != 0 and not result.stdout
    assert "secrets/object-store.env" in result.stderr, result.stderr


# --- credentials: who holds which, and what each may do ------------------------------------------

def secret_readers(objects: list[Object]) -> dict[str, set[str]]:
    """Each Secret's name -> the workloads (the flow-run Job included) whose pods read it, by env, envFrom or volume."""
    readers: dict[str, set[str]] = {}
    for workload, pod in workloads(objects):
        names = set()
        for c in containers(pod):
            names |= {s["secretRef"]["name"] for s in c.get("envFrom", []) if "secretRef" in s}
            names |= {e["valueFrom"]["secretKeyRef"]["name"] for e in c.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})}
        for volume in pod["spec"].get("volumes", []):
            names |= {volume["secret"]["secretName"]} if "secret" in volume else set()
            names |= {s["secret"]["name"] for s in volume.get("projected", {}).get("sources", []) if "secret" in s}
        for name in names:
            readers.setdefault(name, set()).add(workload["metadata"]["name"])
    return readers


def object_store_users(objects: list[Object]) -> dict[str, Object]:
    """Each user the Job object-store-users creates -> its policy, as users.sh makes it (<user>.json, else
    science.json with TASK replaced by the user)."""
    files = by_kind(objects, "ConfigMap")["object-store-users"]["data"]
    pod = by_kind(objects, "Job")["object-store-users"]["spec"]["template"]["spec"]
    (credentials,) = [v for v in pod["volumes"] if v["name"] == "credentials"]
    users = {item["path"].split("/")[0] for source in credentials["projected"]["sources"] for item in source["secret"]["items"]}
    return {user: json.loads(files.get(f"{user}.json") or files["science.json"].replace("TASK", user)) for user in users}


def s3_allows(policy: Object, action: str, bucket: str, key: str | None = None, *, prefix: str | None = None) -> bool:
    """Whether an identity policy allows ``action`` on ``bucket/key``, or on the bucket listing ``prefix``, as MinIO
    (and AWS) evaluate one of Allow statements whose only condition is StringLike on ``s3:prefix``."""
    resource = f"arn:aws:s3:::{bucket}" + (f"/{key}" if key is not None else "")
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow" and set(statement.get("Condition", {})) <= {"StringLike"}
        patterns = statement.get("Condition", {}).get("StringLike", {"s3:prefix": None})
        assert set(patterns) == {"s3:prefix"}, f"a condition this evaluator does not know: {patterns}"
        if action in statement["Action"] and any(fnmatch.fnmatchcase(resource, r) for r in statement["Resource"]):
            allowed = patterns["s3:prefix"]
            if allowed is None or (prefix is not None and any(fnmatch.fnmatchcase(prefix, p) for p in allowed)):
                return True
    return False


# What each user does in the store (the layout of nightshift.core.registry, core.codec, ingest and the flows'
# orchestration.layout) and what it must not: (action, key, or "list:" and the prefix listed).
_SCIENCE_DOES = [("s3:GetObject", "cas/shards/ab/ab12"), ("s3:PutObject", "cas/arrays/cd/cd34"), ("s3:GetObject", "cas/arrays/cd/cd34"),
                 ("s3:PutObject", "models/{task}/2/.claim-0a1b"), ("s3:DeleteObject", "models/{task}/2/.claim-0a1b"),
                 ("s3:PutObject", "models/{task}/2/metadata.json"), ("s3:PutObject", "models/{task}/LATEST"),
                 ("s3:GetObject", "models/{task}/LATEST"), ("s3:ListBucket", "list:models/{task}/"), ("s3:ListBucket", "list:models/{task}/2/")]
_SCIENCE_MUST_NOT = [("s3:PutObject", "models/{other}/LATEST"), ("s3:GetObject", "models/{other}/1/weights.safetensors"),
                     ("s3:ListBucket", "list:models/{other}/"), ("s3:ListBucket", "list:"), ("s3:PutObject", "cas/shards/ab/ab12"),
                     ("s3:GetObject", "raw/2026-03-01/field.fits"), ("s3:GetObject", "runs/2026-03-01/LATEST.json"),
                     ("s3:DeleteObject", "cas/arrays/cd/cd34")]
_INGEST_DOES = [("s3:ListBucket", "list:"), ("s3:GetObject", "raw/2026-03-01/field.fits"), ("s3:PutObject", "cas/shards/ab/ab12"),
                ("s3:GetObject", "cas/shards/ab/ab12"), ("s3:PutObject", "ingest/runs/r1/index/0001"), ("s3:GetObject", "ingest/runs/r1/index/0001")]
_INGEST_MUST_NOT = [("s3:PutObject", "raw/2026-03-01/field.fits"), ("s3:PutObject", "models/bubbles/LATEST"),
                    ("s3:GetObject", "models/bubbles/1/weights.safetensors"), ("s3:PutObject", "cas/arrays/cd/cd34"),
                    ("s3:GetObject", "runs/2026-03-01/LATEST.json"), ("s3:DeleteObject", "cas/shards/ab/ab12")]
_FLOW_DOES = [("s3:PutObject", "raw/2026-03-01/field.fits"), ("s3:PutObject", "runs/2026-03-01/LATEST.json"),
              ("s3:GetObject", "cas/arrays/cd/cd34"), ("s3:PutObject", "models/bubbles/LATEST"), ("s3:ListBucket", "list:")]


def _allowed(policy: Object, bucket: str, action: str, target: str) -> bool:
    if target.startswith("list:"):
        return s3_allows(policy, action, bucket, prefix=target.removeprefix("list:"))
    return s3_allows(policy, action, bucket, target)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_store_user_is_limited_to_its_prefixes(rendered: dict[str, list[Object]], overlay: str) -> None:
    objects = rendered[overlay]
    bucket = config(objects)["NIGHTSHIFT_S3_BUCKET"]
    users = object_store_users(objects)
    assert set(users) == {*GRPC_SERVICES, "flow"}
    wrong = []
    for user, policy in users.items():
        other = "clusters" if user == "bubbles" else "bubbles"
        does, must_not = {"ingest": (_INGEST_DOES, _INGEST_MUST_NOT), "flow": (_FLOW_DOES, [])}.get(user, (_SCIENCE_DOES, _SCIENCE_MUST_NOT))
        for action, target in does:
            if not _allowed(policy, bucket, action, target.format(task=user, other=other)):
                wrong.append(f"{user} may not {action} {target.format(task=user, other=other)}")
        for action, target in must_not:
            if _allowed(policy, bucket, action, target.format(task=user, other=other)):
                wrong.append(f"{user} may {action} {target.format(task=user, other=other)}")
        for action, target in does:  # and nothing of it in another bucket
            if _allowed(policy, "secret", action, target.format(task=user, other=other)):
                wrong.append(f"{user} may {action} {target.format(task=user, other=other)} in the bucket 'secret'")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_pod_holds_only_its_own_credentials(rendered: dict[str, list[Object]], overlay: str) -> None:
    objects = rendered[overlay]
    readers = secret_readers(objects)
    flow_run = flow_run_job()["metadata"]["name"]
    # MinIO's root user: MinIO and the Job that makes the users; every other pod has a user of its own.
    assert readers["nightshift-object-store"] == {"minio", "object-store-users"}
    for user in (*GRPC_SERVICES, "flow"):
        assert readers[f"nightshift-s3-{user}"] == {flow_run if user == "flow" else user, "object-store-users"}, user
    # Authentication on: the services verify with the secret, the flow runs call with tokens signed with it.
    assert config(objects)["NIGHTSHIFT_AUTH"] == "on"
    assert readers["nightshift-auth"] == set(GRPC_SERVICES)
    assert readers["nightshift-flow-tokens"] == {flow_run}
    secrets = by_kind(objects, "Secret")
    assert set(secrets["nightshift-flow-tokens"]["data"]) == {role_token_env(role) for role in ROLES}
    assert set(secrets["nightshift-auth"]["data"]) == {"NIGHTSHIFT_AUTH_SECRET"}
    assert readers["nightshift-prefect-api"] == {"prefect-server", "prefect-worker"}  # flow runs: by the worker


def test_the_object_store_users_script_parses() -> None:
    script = REPO / "deploy" / "k8s" / "base" / "object-store-users" / "users.sh"
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_prefect_api_needs_its_basic_auth(rendered: dict[str, list[Object]], overlay: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.settings.models.api import APISettings
    from prefect.settings.models.server.api import ServerAPISettings
    from prefect_kubernetes.settings import KubernetesSettings

    deployments = by_kind(rendered[overlay], "Deployment")
    (server,) = deployments["prefect-server"]["spec"]["template"]["spec"]["containers"]
    (worker,) = deployments["prefect-worker"]["spec"]["template"]["spec"]["containers"]
    reference = {"secretKeyRef": {"name": "nightshift-prefect-api", "key": "PREFECT_API_AUTH_STRING"}}
    server_env, worker_env = ({e["name"]: e for e in c["env"]} for c in (server, worker))
    assert server_env["PREFECT_SERVER_API_AUTH_STRING"]["valueFrom"] == worker_env["PREFECT_API_AUTH_STRING"]["valueFrom"] == reference
    # the server lets its probes through without the string (prefect.server.api.server: health checks exempt)
    assert server["livenessProbe"]["httpGet"]["path"] == server["readinessProbe"]["httpGet"]["path"] == "/api/health"

    # the pinned Prefect and prefect-kubernetes read these very variables
    monkeypatch.setenv("PREFECT_SERVER_API_AUTH_STRING", "nightshift:pw")
    monkeypatch.setenv("PREFECT_API_AUTH_STRING", "nightshift:pw")
    for name, entry in worker_env.items():
        if "value" in entry and name.startswith("PREFECT_INTEGRATIONS_KUBERNETES_WORKER_"):
            monkeypatch.setenv(name, entry["value"])
    assert ServerAPISettings().auth_string.get_secret_value() == APISettings().auth_string.get_secret_value() == "nightshift:pw"
    worker_settings = KubernetesSettings().worker
    assert (worker_settings.api_auth_string_secret_name, worker_settings.api_auth_string_secret_key) == (
        reference["secretKeyRef"]["name"], reference["secretKeyRef"]["key"])


def _status(url: str, *, method: str = "GET", auth: str | None = None) -> int:
    request = urllib.request.Request(url, method=method, data=b"{}" if method == "POST" else None,
                                     headers={"content-type": "application/json"})
    if auth is not None:
        request.add_header("authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_the_pinned_prefect_server_with_the_manifests_auth_string_refuses_calls_without_it(
    rendered: dict[str, list[Object]], tmp_path: Path
) -> None:
    objects = rendered["dev"]
    secrets = {name: {k: base64.b64decode(v).decode() for k, v in o["data"].items()} for name, o in by_kind(objects, "Secret").items()}
    auth = secrets["nightshift-prefect-api"]["PREFECT_API_AUTH_STRING"]
    (container,) = by_kind(objects, "Deployment")["prefect-server"]["spec"]["template"]["spec"]["containers"]
    # the server's environment as the manifest gives it, but for the database (the server's own SQLite here)
    from_secrets = {e["name"]: secrets[e["valueFrom"]["secretKeyRef"]["name"]][e["valueFrom"]["secretKeyRef"]["key"]]
                    for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {}) and e["name"].startswith("PREFECT_")}
    assert from_secrets, "the Prefect server reads no setting from a Secret"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_")}
    env.update(PREFECT_HOME=str(tmp_path), PREFECT_SERVER_ANALYTICS_ENABLED="false", **from_secrets)
    port = free_port()
    with (tmp_path / "server.log").open("wb") as log:
        server = subprocess.Popen(end_with_parent([str(Path(sys.executable).with_name("prefect")), "server", "start",
                                                   "--host", "127.0.0.1", "--port", str(port)]),
                                  env=env, stdout=log, stderr=subprocess.STDOUT)
    api = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 120
        while server.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if _status(f"{api}/health") == 200:
                    break
            time.sleep(0.5)
        assert _status(f"{api}/health") == 200, (tmp_path / "server.log").read_text()[-2000:]  # the probes' path: open
        assert _status(f"{api}/flows/filter", method="POST") == 401
        assert _status(f"{api}/flows/filter", method="POST", auth="nightshift:wrong") == 401
        assert _status(f"{api}/flows/filter", method="POST", auth=auth) == 200
    finally:
        stop_child(server)


# --- examples/shared-memory: a caller and a service in one pod ---------------------------------------

def test_the_shared_memory_example_validates_and_follows_the_container_policy(shared_memory_example: list[Object]) -> None:
    for obj in shared_memory_example:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    (job,) = by_kind(shared_memory_example, "Job").values()
    assert not hardening_problems(job, job["spec"]["template"])
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never" and job["spec"]["backoffLimit"] == 0


def test_the_shared_memory_examples_caller_and_service_share_one_in_memory_dev_shm(rendered: dict[str, list[Object]],
                                                                                     shared_memory_example: list[Object]) -> None:
    (job,) = by_kind(shared_memory_example, "Job").values()
    pod = job["spec"]["template"]
    (service,), (caller,) = pod["spec"]["initContainers"], pod["spec"]["containers"]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    for container in (service, caller):
        (shm,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/dev/shm"]
        assert volumes[shm["name"]]["emptyDir"]["medium"] == "Memory", container["name"]
    # the service: a native sidecar that lets the caller start only once its model is loaded
    assert service["restartPolicy"] == "Always" and service["args"] == ["serve"]
    assert service["startupProbe"]["grpc"] == {"port": 50052, "service": READINESS_SERVICE["bubbles"]}
    objects = rendered["dev"]
    service_env = environment(objects, service)
    assert service_env["NIGHTSHIFT_SHM_DIR"] == "/dev/shm" and service_env["NIGHTSHIFT_AUTH"] == "on"
    assert service_env["NIGHTSHIFT_GRPC_HEALTH_PORT"] == "50052"
    # the caller: the service's port on the pod's loopback, its regions in the shared directory
    command = caller["command"]
    assert command[:2] == ["nightshift-core", "check-shared-memory"]
    assert command[command.index("--target") + 1] == f"127.0.0.1:{service_env['NIGHTSHIFT_GRPC_PORT']}"
    assert command[command.index("--shm-dir") + 1] == "/dev/shm"
    # the regions count against the caller's memory: its limit holds the whole emptyDir
    size_limit = volumes["shm"]["emptyDir"]["sizeLimit"]
    assert size_limit == "1Gi" and caller["resources"]["limits"]["memory"] == "2Gi"


def test_the_shared_memory_example_holds_only_its_credentials_and_reaches_only_the_object_store(
        rendered: dict[str, list[Object]], shared_memory_example: list[Object]) -> None:
    objects = rendered["dev"]
    (job,) = by_kind(shared_memory_example, "Job").values()
    pod = job["spec"]["template"]
    assert not unresolved_references(objects, job, pod)
    (service,), (caller,) = pod["spec"]["initContainers"], pod["spec"]["containers"]
    caller_secrets = {e["valueFrom"]["secretKeyRef"]["key"] for e in caller["env"] if "secretKeyRef" in e.get("valueFrom", {})}
    assert caller_secrets == {role_token_env("infer")} and "envFrom" not in caller and "volumeMounts" in caller
    assert {m["name"] for m in caller["volumeMounts"]} == {"shm", "tmp"}  # no CA, no service credentials
    assert {s["secretRef"]["name"] for s in service["envFrom"] if "secretRef" in s} == {"nightshift-auth"}
    with_example = [*objects, *shared_memory_example]
    minio = by_kind(objects, "StatefulSet")["minio"]["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert ingress_allowed(with_example, labels, minio, 9000)  # its model registry
    assert not ingress_allowed(objects, labels, minio, 9000)  # the example's own policy is what admits it
    flow = {"nightshift.io/role": "flow"}
    assert not ingress_allowed(with_example, flow, pod, 50051)  # nobody but its caller, on loopback, reaches the service
