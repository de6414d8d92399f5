"""Render a kustomization the way ``kubectl apply -k`` does, for the subset of kustomize Nightshift uses.

The build machines have no kubectl or kustomize, yet the tests must see exactly the objects an operator
applies. This renderer implements only the fields ``deploy/k8s`` uses and refuses every other field, so
a kustomization it renders means the same thing to real kustomize:

- ``resources``: YAML files (several documents each) and directories holding a kustomization;
- ``configMapGenerator`` / ``secretGenerator`` with ``files`` and ``envs``, only with
  ``generatorOptions.disableNameSuffixHash: true`` (so names stay as written and no reference rewriting
  is needed);
- ``patches``: JSON 6902 operations (``add``, ``replace``, ``remove``) from a file, applied to the
  objects a ``target`` selects (``kind``, ``name``, equality-based ``labelSelector``);
- ``namespace``; ``labels`` (metadata labels only: no selectors, no templates); ``images``.

Transformers run in kustomize's order: patches, namespace, labels, images.

Run ``python deploy/render.py deploy/k8s/overlays/gpu`` to print what an overlay applies.
"""

from __future__ import annotations

import argparse
import base64
import copy
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

__all__ = ["render", "pod_spec", "UnsupportedKustomization"]

Object = dict[str, Any]

SUPPORTED_FIELDS = {
    "apiVersion", "kind", "resources", "configMapGenerator", "secretGenerator", "generatorOptions",
    "patches", "namespace", "labels", "images",
}
# Kinds without a namespace among those Nightshift deploys (kustomize leaves them unnamespaced).
CLUSTER_SCOPED_KINDS = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass"}


class UnsupportedKustomization(ValueError):
    """A kustomization uses something this renderer would not render as kustomize does."""


def render(directory: Path, *, read_secret_env: Callable[[Path], str] | None = None) -> list[Object]:
    """The objects ``kubectl apply -k directory`` applies.

    Parameters
    ----------
    directory : Path
        Folder holding ``kustomization.yaml``.
    read_secret_env : callable, optional
        Reads a ``secretGenerator`` env file (default: the file itself). The tests pass a reader that
        falls back to the committed ``*.example`` beside a credentials file that is not in git.

    Raises
    ------
    UnsupportedKustomization
        If the kustomization uses a field or option outside the supported subset.
    """
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unsupported = set(kustomization) - SUPPORTED_FIELDS
    if unsupported:
        raise UnsupportedKustomization(f"{directory}: unsupported kustomization fields {sorted(unsupported)}")

    objects: list[Object] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        if path.is_dir():
            objects += render(path, read_secret_env=read_secret_env)
        else:
            objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    objects += _generated(directory, kustomization, read_secret_env or (lambda p: p.read_text()))

    for patch in kustomization.get("patches", []):
        _apply_patch(directory, patch, objects)
    if "namespace" in kustomization:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED_KINDS:
                obj["metadata"]["namespace"] = kustomization["namespace"]
    for label_set in kustomization.get("labels", []):
        if label_set.get("includeSelectors") or label_set.get("includeTemplates"):
            raise UnsupportedKustomization(f"{directory}: labels only on metadata (no includeSelectors/includeTemplates)")
        for obj in objects:
            obj["metadata"].setdefault("labels", {}).update(label_set["pairs"])
    for image in kustomization.get("images", []):
        for container in _containers(objects):
            _retag(container, image)
    return objects


def _generated(directory: Path, kustomization: Mapping[str, Any], read_secret_env: Callable[[Path], str]) -> list[Object]:
    generators = [("ConfigMap", g) for g in kustomization.get("configMapGenerator", [])]
    generators += [("Secret", g) for g in kustomization.get("secretGenerator", [])]
    if generators and not kustomization.get("generatorOptions", {}).get("disableNameSuffixHash"):
        raise UnsupportedKustomization(f"{directory}: generators need generatorOptions.disableNameSuffixHash: true")
    objects = []
    for kind, generator in generators:
        unsupported = set(generator) - {"name", "files", "envs"}
        if unsupported:
            raise UnsupportedKustomization(f"{directory}: unsupported {kind} generator fields {sorted(unsupported)}")
        data: dict[str, str] = {}
        for entry in generator.get("files", []):
            data[Path(entry).name] = (directory / entry).read_text()
        for entry in generator.get("envs", []):
            text = read_secret_env(directory / entry) if kind == "Secret" else (directory / entry).read_text()
            data.update(_env_lines(text))
        obj: Object = {"apiVersion": "v1", "kind": kind, "metadata": {"name": generator["name"]}}
        if kind == "Secret":
            obj["type"] = "Opaque"
            obj["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        else:
            obj["data"] = data
        objects.append(obj)
    return objects


def _env_lines(text: str) -> dict[str, str]:
    """``KEY=VALUE`` lines as kustomize reads an env file (blank lines and ``#`` comments skipped)."""
    pairs = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value
    return pairs


def _apply_patch(directory: Path, patch: Mapping[str, Any], objects: list[Object]) -> None:
    if set(patch) != {"path", "target"}:
        raise UnsupportedKustomization(f"{directory}: patches need exactly a path and a target, got {sorted(patch)}")
    operations = yaml.safe_load((directory / patch["path"]).read_text())
    if not isinstance(operations, list):
        raise UnsupportedKustomization(f"{directory}/{patch['path']}: only JSON 6902 patches (a list of operations)")
    targets = [obj for obj in objects if _selected(obj, patch["target"])]
    if not targets:
        raise UnsupportedKustomization(f"{directory}: patch {patch['path']} selects no object")
    for obj in targets:
        for operation in operations:
            _json6902(obj, operation)


def _selected(obj: Object, target: Mapping[str, str]) -> bool:
    unsupported = set(target) - {"kind", "name", "labelSelector"}
    if unsupported:
        raise UnsupportedKustomization(f"unsupported patch target fields {sorted(unsupported)}")
    if "kind" in target and obj["kind"] != target["kind"]:
        return False
    if "name" in target and obj["metadata"]["name"] != target["name"]:
        return False
    labels = obj["metadata"].get("labels", {})
    for requirement in filter(None, target.get("labelSelector", "").split(",")):
        key, sep, value = requirement.partition("=")
        if not sep or any(c in requirement for c in "!()"):
            raise UnsupportedKustomization(f"only key=value label selectors, got {requirement!r}")
        if labels.get(key.strip()) != value.strip():
            return False
    return True


def _json6902(obj: Object, operation: Mapping[str, Any]) -> None:
    op = operation["op"]
    if op not in {"add", "replace", "remove"}:
        raise UnsupportedKustomization(f"unsupported JSON patch operation {op!r}")
    *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in operation["path"].split("/")[1:]]
    node: Any = obj
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    value = copy.deepcopy(operation.get("value"))
    if isinstance(node, list):
        if op == "add":
            node.insert(len(node) if last == "-" else int(last), value)
        elif op == "replace":
            node[int(last)] = value
        else:
            del node[int(last)]
    elif op == "add":
        node[last] = value
    elif last not in node:
        raise KeyError(f"JSON patch {op} of missing {operation['path']} in {obj['kind']}/{obj['metadata']['name']}")
    elif op == "replace":
        node[last] = value
    else:
        del node[last]


def _containers(objects: list[Object]) -> list[Object]:
    containers = []
    for obj in objects:
        pod = pod_spec(obj)
        if pod is not None:
            containers += pod.get("initContainers", []) + pod["containers"]
    return containers


def pod_spec(obj: Object) -> Object | None:
    """The pod spec of a workload (Deployment, StatefulSet, Job, CronJob), else None."""
    spec = obj.get("spec", {})
    if obj["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    template = spec.get("template") if isinstance(spec, dict) else None
    return template["spec"] if template and "containers" in template.get("spec", {}) else None


def _retag(container: Object, image: Mapping[str, str]) -> None:
    """kustomize's ``images`` entry: match the image name, replace name, tag or digest."""
    reference = container["image"]
    name, tag = (reference.split("@", 1)[0], "@" + reference.split("@", 1)[1]) if "@" in reference else (reference, "")
    if not tag and ":" in name.rsplit("/", 1)[-1]:
        name, tag = name.rsplit(":", 1)
        tag = ":" + tag
    if name != image["name"]:
        return
    if "digest" in image:
        tag = "@" + image["digest"]
    elif "newTag" in image:
        tag = ":" + image["newTag"]
    container["image"] = image.get("newName", name) + tag


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path, help="folder holding kustomization.yaml, e.g. deploy/k8s/overlays/gpu")
    args = parser.parse_args(argv)
    yaml.safe_dump_all(render(args.directory), sys.stdout, sort_keys=False)


if __name__ == "__main__":
    main()
