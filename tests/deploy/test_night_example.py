"""deploy/k8s/night.example.json: the night's configuration for the cluster (deploy/k8s/README.md, step 6).

It must be a valid ``NightConfig`` of the orchestration and name exactly the gRPC Services the
manifests create, each through the DNS resolver (``dns:///<service>:<port>``): the Services are
headless, so the client sees every pod and balances its calls round robin over them. Its surveys and
radii are the demo night's (each service's ``simulate-night`` kit, ``night.json``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nightshift.orchestration.config import NightConfig

REPO = Path(__file__).resolve().parents[2]
NIGHT_EXAMPLE = REPO / "deploy" / "k8s" / "night.example.json"


@pytest.fixture(scope="module")
def night() -> NightConfig:
    return NightConfig.model_validate_json(NIGHT_EXAMPLE.read_text())


def _grpc_targets(objects: list[dict[str, Any]]) -> dict[str, str]:
    """``dns:///<name>:<port>`` of every headless Service with a ``grpc`` port, by Service name."""
    targets = {}
    for service in (o for o in objects if o["kind"] == "Service"):
        ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
        if "grpc" in ports:
            assert service["spec"].get("clusterIP") == "None", f"{service['metadata']['name']} is not headless"
            targets[service["metadata"]["name"]] = f"dns:///{service['metadata']['name']}:{ports['grpc']}"
    return targets


@pytest.mark.parametrize("overlay", ["dev", "gpu"])
def test_the_example_night_calls_exactly_the_grpc_services_of_the_manifests(
    night: NightConfig, rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    targets = _grpc_targets(rendered[overlay])
    assert night.ingest_target == targets.pop("ingest")
    assert {s.name: s.target for s in night.services} == targets

