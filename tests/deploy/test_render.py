"""deploy/render.py renders its kustomize subset as kustomize does, and refuses the rest."""

from __future__ import annotations

import base64
import textwrap
from pathlib import Path
from types import ModuleType

import pytest


def _write(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(textwrap.dedent(text))
    return folder


DEPLOYMENT = """
    apiVersion: apps/v1
    kind: Deployment
    metadata:
      name: {name}
      labels: {{tier: {tier}}}
    spec:
      selector: {{matchLabels: {{app: {name}}}}}
      template:
        metadata: {{labels: {{app: {name}}}}}
        spec:
          containers: [{{name: main, image: "example/{name}"}}]
"""


def test_base_and_overlay(renderer: ModuleType, tmp_path: Path) -> None:
    _write(tmp_path, {
        "base/kustomization.yaml": """
            namespace: science
            labels: [{pairs: {part-of: night}}]
            resources: [apps.yaml]
            images: [{name: example/gpu, newName: registry.test/gpu, newTag: "1.2"}]
            generatorOptions: {disableNameSuffixHash: true}
            secretGenerator: [{name: creds, envs: [creds.env]}]
            configMapGenerator: [{name: files, files: [conf/settings.json]}]
        """,
        "base/apps.yaml": DEPLOYMENT.format(name="gpu", tier="gpu") + "---" + DEPLOYMENT.format(name="cpu", tier="cpu"),
        "base/creds.env": "# a comment\n\nUSER=alice\nPASSWORD=a=b\n",
        "base/conf/settings.json": '{"x": 1}',
        "overlay/kustomization.yaml": """
            resources: [../base]
            patches:
              - path: gpu.yaml
                target: {kind: Deployment, labelSelector: tier=gpu}
        """,
        "overlay/gpu.yaml": """
            - {op: add, path: /spec/template/spec/containers/0/resources, value: {limits: {nvidia.com/gpu: "1"}}}
            - {op: add, path: /spec/template/spec/tolerations/-, value: {key: k, operator: Exists}}
        """,
    })
    # tolerations/- appends: the list must exist first.
    (tmp_path / "base/apps.yaml").write_text((tmp_path / "base/apps.yaml").read_text().replace(
        "containers:", "tolerations: []\n          containers:"))
    objects = {(o["kind"], o["metadata"]["name"]): o for o in renderer.render(tmp_path / "overlay")}

    gpu, cpu = objects["Deployment", "gpu"], objects["Deployment", "cpu"]
    assert gpu["spec"]["template"]["spec"]["containers"][0] == {
        "name": "main", "image": "registry.test/gpu:1.2", "resources": {"limits": {"nvidia.com/gpu": "1"}}}
    assert gpu["spec"]["template"]["spec"]["tolerations"] == [{"key": "k", "operator": "Exists"}]
    assert "resources" not in cpu["spec"]["template"]["spec"]["containers"][0]
    assert cpu["spec"]["template"]["spec"]["containers"][0]["image"] == "example/cpu"
    assert all(o["metadata"]["namespace"] == "science" for o in objects.values())
    # labels without includeSelectors/includeTemplates: metadata only, selectors untouched.
    assert cpu["metadata"]["labels"] == {"tier": "cpu", "part-of": "night"}
    assert cpu["spec"]["selector"] == {"matchLabels": {"app": "cpu"}}
    secret = objects["Secret", "creds"]
    assert {k: base64.b64decode(v).decode() for k, v in secret["data"].items()} == {"USER": "alice", "PASSWORD": "a=b"}
    assert objects["ConfigMap", "files"]["data"] == {"settings.json": '{"x": 1}'}


@pytest.mark.parametrize(("kustomization", "message"), [
    ("resources: []\ncommonAnnotations: {a: b}\n", "unsupported kustomization fields"),
    ("configMapGenerator: [{name: x, literals: [a=b]}]\ngeneratorOptions: {disableNameSuffixHash: true}\n", "unsupported ConfigMap generator"),
    ("secretGenerator: [{name: x, envs: [x.env]}]\n", "disableNameSuffixHash"),
    ("labels: [{pairs: {a: b}, includeSelectors: true}]\n", "only on metadata"),
    ("resources: [apps.yaml]\npatches: [{path: p.yaml, target: {kind: Deployment, labelSelector: 'tier in (gpu)'}}]\n", "key=value"),
    ("resources: [apps.yaml]\npatches: [{path: p.yaml, target: {kind: StatefulSet}}]\n", "selects no object"),
    ("resources: [apps.yaml]\npatches: [{path: smp.yaml, target: {kind: Deployment}}]\n", "only JSON 6902"),
])
def test_refuses_what_it_cannot_render_faithfully(renderer: ModuleType, tmp_path: Path, kustomization: str, message: str) -> None:
    _write(tmp_path, {
        "kustomization.yaml": kustomization,
        "apps.yaml": DEPLOYMENT.format(name="gpu", tier="gpu"),
        "p.yaml": "[{op: add, path: /spec/replicas, value: 2}]",
        "smp.yaml": "spec: {replicas: 2}",
    })
    with pytest.raises(renderer.UnsupportedKustomization, match=message):
        renderer.render(tmp_path)


def test_replace_of_a_missing_field_fails(renderer: ModuleType, tmp_path: Path) -> None:
    _write(tmp_path, {
        "kustomization.yaml": "resources: [apps.yaml]\npatches: [{path: p.yaml, target: {name: gpu}}]\n",
        "apps.yaml": DEPLOYMENT.format(name="gpu", tier="gpu"),
        "p.yaml": "[{op: replace, path: /spec/replicas, value: 2}]",
    })
    with pytest.raises(KeyError, match="replace of missing /spec/replicas in Deployment/gpu"):
        renderer.render(tmp_path)


@pytest.mark.parametrize(("image", "entry", "expected"), [
    ("app", {"name": "app", "newTag": "2"}, "app:2"),
    ("app:1", {"name": "app", "newName": "reg.io:5000/team/app"}, "reg.io:5000/team/app:1"),
    ("reg.io:5000/app:1", {"name": "reg.io:5000/app", "digest": "sha256:abc"}, "reg.io:5000/app@sha256:abc"),
    ("app@sha256:abc", {"name": "app", "newTag": "3"}, "app:3"),
    ("other:1", {"name": "app", "newTag": "2"}, "other:1"),
])
def test_images(renderer: ModuleType, image: str, entry: dict[str, str], expected: str) -> None:
    container = {"image": image}
    renderer._retag(container, entry)
    assert container["image"] == expected
