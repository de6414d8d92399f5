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
