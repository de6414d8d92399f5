"""Fixtures of the deployment tests: both overlays rendered by ``kubectl kustomize``, as ``kubectl apply -k`` applies them."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"


def _kustomize(directory: Path) -> subprocess.CompletedProcess[str]:
    """``kubectl kustomize DIRECTORY``: what ``kubectl apply -k`` would apply, rendered offline."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the overlays are rendered by kubectl kustomize")
    return subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=120)


def _copy_with_example_credentials(destination: Path) -> Path:
    """A copy of deploy/k8s whose secret env files are the committed examples (CI has no credentials)."""
    copy = destination / "k8s"
    shutil.copytree(K8S, copy, ignore=shutil.ignore_patterns("*.env"))
    for example in (copy / "base" / "secrets").glob("*.env.example"):
        shutil.copy(example, example.with_suffix(""))
    return copy


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """Each overlay's objects, as ``kubectl apply -k deploy/k8s/overlays/<overlay>`` applies them."""
    k8s = _copy_with_example_credentials(tmp_path_factory.mktemp("deploy"))
    objects = {}
    for overlay in sorted((k8s / "overlays").iterdir()):
        result = _kustomize(overlay)
        assert result.returncode == 0, result.stderr
        objects[overlay.name] = [o for o in yaml.safe_load_all(result.stdout) if o]
    return objects


@pytest.fixture(scope="session")
def shared_memory_example() -> list[dict[str, Any]]:
    """The objects of ``kubectl apply -k deploy/k8s/examples/shared-memory`` (a caller and a service in one pod)."""
    result = _kustomize(K8S / "examples" / "shared-memory")
    assert result.returncode == 0, result.stderr
    return [o for o in yaml.safe_load_all(result.stdout) if o]


@pytest.fixture
def example_k8s(tmp_path: Path) -> Path:
    """This test's own copy of deploy/k8s, with the example credentials."""
    return _copy_with_example_credentials(tmp_path)


@pytest.fixture
def kustomize() -> Callable[[Path], subprocess.CompletedProcess[str]]:
    return _kustomize
