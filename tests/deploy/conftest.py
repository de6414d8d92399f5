"""Fixtures of the deployment tests: the renderer (deploy/render.py) and both overlays rendered."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


def _load_renderer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("nightshift_deploy_render", REPO / "deploy" / "render.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_secret_env_or_example(path: Path) -> str:
    """The credentials file if the operator made one, else the committed example (CI has no credentials)."""
    return (path if path.exists() else path.with_name(path.name + ".example")).read_text()


@pytest.fixture(scope="session")
def renderer() -> ModuleType:
    return _load_renderer()


@pytest.fixture(scope="session")
def rendered(renderer: ModuleType) -> dict[str, list[dict[str, Any]]]:
    """Each overlay's objects, as ``kubectl apply -k deploy/k8s/overlays/<overlay>`` applies them."""
    return {
        overlay.name: renderer.render(overlay, read_secret_env=read_secret_env_or_example)
        for overlay in sorted((REPO / "deploy" / "k8s" / "overlays").iterdir())
    }
