"""The servicer is the thin top layer: no module of the package imports it (only the CLI, to serve)."""

from __future__ import annotations

import ast
from pathlib import Path

import nightshift.clusters.bundle as bundle

PACKAGE = Path(bundle.__file__).parent


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_no_module_but_the_cli_imports_the_servicer() -> None:
    importers = sorted(p.name for p in PACKAGE.glob("*.py")
                       if p.name not in ("servicer.py", "cli.py") and "nightshift.clusters.servicer" in _imports(p))
    assert importers == []
    # what the servicer, infer, evaluate and night share comes from the lower module
    for name in ("infer.py", "evaluate.py", "night.py"):
        assert "nightshift.clusters.bundle" in _imports(PACKAGE / name), name
    assert "nightshift.clusters.bundle" not in {m for m in _imports(PACKAGE / "bundle.py")}
    assert bundle.bundled_weights().suffix == ".keras"


def test_the_package_imports_form_no_cycle() -> None:
    """Deferred (in-function) imports count too: infer and the matched filter share detections.py, a lower module."""
    graph = {p.stem: {m.rsplit(".", 1)[-1] for m in _imports(p) if m.startswith("nightshift.clusters.")} - {p.stem}
             for p in PACKAGE.glob("*.py")}
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, " -> ".join((*path, name))
        if name in done:
            return
        for child in sorted(graph.get(name, ())):
            visit(child, (*path, name))
        done.add(name)

    for name in sorted(graph):
        visit(name, ())
    assert "detections" in graph["matched_filter"] and "infer" not in graph["matched_filter"]
