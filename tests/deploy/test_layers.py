"""The deploy package imports nothing above it, and its modules form no import cycle."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO_ROOT

DEPLOY = REPO_ROOT / "safemig" / "deploy"


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_deploy_modules_import_no_layer_above_and_no_cycle():
    graph: dict[str, set[str]] = {}
    for path in sorted(DEPLOY.glob("*.py")):
        imports = _imports(path)
        upward = sorted(i for i in imports if i.startswith(("safemig.cli", "safemig.commands")))
        assert not upward, f"{path.name} imports {upward}"
        graph[path.stem] = {i.split(".")[2] for i in imports if i.startswith("safemig.deploy.")} - {path.stem}

    state: dict[str, int] = {}

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == 2:
            return
        assert state.get(name) != 1, "import cycle: " + " -> ".join([*trail, name])
        state[name] = 1
        for dep in sorted(graph.get(name, ())):
            visit(dep, [*trail, name])
        state[name] = 2

    for name in graph:
        visit(name, [])
    assert "pipeline" not in graph["rehearsal"]
