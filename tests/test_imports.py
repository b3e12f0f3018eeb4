"""The import graph of the app's packages: no cycle, and the core depends on neither the agents nor
the web layer (the stages are found by Faust's autodiscovery, flights_app.app.STAGES)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.harness import ROOT

PACKAGES = ("flights_app", "agents", "tables", "ml", "web")
#: The command line starts every part (the worker, the dashboard): it may import any of them.
ENTRY_POINTS = {"flights_app.cli"}


def modules(root: Path = ROOT) -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (root / package).rglob("*.py"):
            name = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
            found[name] = path
    return found


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the app's modules it imports, at its top or inside a function."""
    known = modules(root)

    def resolve(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            graph[name] |= {t for t in map(resolve, targets) if t and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    assert len(graph) > 50 and graph["agents.scoring"] >= {"flights_app.app", "agents.windows"}
    assert cycles(graph) == []


def test_the_core_imports_neither_the_agents_nor_the_web_layer():
    for name, imported in import_graph().items():
        if name.startswith(("flights_app.", "tables.", "ml.")) and name not in ENTRY_POINTS:
            assert not {m for m in imported if m.startswith(("agents", "web"))}, name
        if name.startswith("agents"):
            assert not {m for m in imported if m.startswith("web")}, name


def test_the_check_finds_a_cycle(tmp_path):
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "flights_app" / "app.py").write_text("def later():\n    from agents import scoring\n")
    (tmp_path / "agents" / "scoring.py").write_text("from flights_app.app import later\n")
    assert cycles(import_graph(tmp_path)) == [["agents.scoring", "flights_app.app"]]
