"""The house rules that keep services independent: layout, dependencies and imports."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SERVICES = ("ingest", "bubbles", "clusters", "filaments", "ghosts", "inclination")
PACKAGES = sorted(p.parent for p in [*REPO.glob("services/*/pyproject.toml"), REPO / "orchestration" / "pyproject.toml"] if p.exists())


def test_top_level_layout() -> None:
    for path in [*(f"services/{s}" for s in SERVICES), "proto", "deploy/k8s", "orchestration", "tests", "core"]:
        assert (REPO / path).is_dir(), f"{path}/ is missing"


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_packages_depend_on_no_project_package_but_core(package: Path) -> None:
    project = tomllib.loads((package / "pyproject.toml").read_text())["project"]
    own = {d.split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip() for d in project["dependencies"]}
    project_packages = {d for d in own if d.startswith("nightshift")}
    assert project_packages == {"nightshift-core"}, f"{package.name} depends on {project_packages}"
    expected_script = "nightshift" if package.name == "orchestration" else f"nightshift-{package.name}"
    assert expected_script in project.get("scripts", {}), f"{package.name} installs no {expected_script} command"


def _imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
    return modules


@pytest.mark.parametrize("service", [s for s in SERVICES if (REPO / "services" / s / "pyproject.toml").exists()])
def test_no_service_imports_another_service(service: str) -> None:
    forbidden = {f"nightshift.{other}" for other in (*SERVICES, "orchestration") if other != service}
    offenders = []
    for path in (REPO / "services" / service).rglob("*.py"):
        for module in _imported_modules(path):
            if any(module == f or module.startswith(f + ".") for f in forbidden):
                offenders.append(f"{path.relative_to(REPO)} imports {module}")
    assert not offenders, offenders


@pytest.mark.parametrize("service", [s for s in SERVICES if s != "ingest"])
def test_every_registry_a_science_service_builds_runs_its_smoke_check(service: str) -> None:
    # so no command line, servicer or workflow registers or promotes a version whose model gives NaN (issue 26)
    calls = [(path, node) for path in sorted((REPO / "services" / service / "src").rglob("*.py"))
             for node in ast.walk(ast.parse(path.read_text(), str(path)))
             if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("ModelRegistry", "resolve_checkpoint")]
    assert calls, f"{service} builds no model registry"
    without = [f"{path.relative_to(REPO)}:{node.lineno}" for path, node in calls if "smoke" not in {k.arg for k in node.keywords}]
    assert without == [], f"registries built without smoke=: {without}"
