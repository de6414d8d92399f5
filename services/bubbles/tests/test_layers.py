"""The package's import layers: the servicer is the top of the serving path, with no cycle through it (issue 17)."""

import ast
from pathlib import Path

import nightshift.bubbles

PACKAGE = Path(nightshift.bubbles.__file__).parent
TOP = {"servicer", "bench", "cli"}
"""Modules above the servicer or the servicer itself: nothing below may import them."""


def _imports() -> dict[str, set[str]]:
    """Each module's imports of sibling modules, lazy ones inside functions included."""
    graph = {}
    for path in PACKAGE.glob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("nightshift.bubbles."):
                names.add(node.module.split(".")[2])
        graph[path.stem] = names
    return graph


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for name in graph.get(todo.pop(), ()):
            if name not in seen:
                seen.add(name)
                todo.append(name)
    return seen


def test_servicer_imports_no_command_line_layer():
    graph = _imports()
    assert "servicer" in graph and "workflows" in graph
    assert not _reachable(graph, "servicer") & (TOP | {"workflows", "night"})


def test_only_the_top_layer_imports_the_servicer():
    graph = _imports()
    importers = {module for module, names in graph.items() if "servicer" in names}
    assert importers <= TOP - {"servicer"}, importers


def test_no_import_cycles():
    graph = _imports()
    cyclic = sorted(module for module in graph if module in _reachable(graph, module))
    assert not cyclic, cyclic
