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


#: What an agents module may bind at its top besides functions, classes and immutable constants:
#: its logger and its one stage object (which owns the stage's state, counters and tables).
STAGE_NAMES = {"log", "stage", "detector"}


def module_state(path: Path) -> list[str]:
    """The names a module binds at its top to something that may change: anything but a function, a
    class, an UPPER_CASE constant that is not a list, dict or set, a type alias, or a STAGE_NAMES object.
    Class bodies count too: a class attribute assigned a value is state shared by every instance."""
    found = []
    mutable = (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)
    MUTABLE_CALLS = {"set", "list", "dict", "defaultdict", "Counter", "OrderedDict", "deque"}  # noqa: N806

    def judge(body, where: str) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef):
                # a dataclass's fields are per instance; any other class attribute with a value is shared
                dataclass = any("dataclass" in ast.unparse(d) for d in node.decorator_list)
                for item in node.body:
                    if isinstance(item, ast.Assign) or (isinstance(item, ast.AnnAssign) and item.value is not None
                                                        and not dataclass):
                        targets = item.targets if isinstance(item, ast.Assign) else [item.target]
                        found.extend(f"{where}{node.name}.{ast.unparse(t)}" for t in targets)
                continue
            if isinstance(node, ast.If):  # declarations made only with a setting
                judge(node.body + node.orelse, where)
                continue
            if not isinstance(node, ast.Assign | ast.AnnAssign):
                continue
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                name = ast.unparse(target)
                made = ast.unparse(node.value.func) if isinstance(node.value, ast.Call) else ""
                constant = name.isupper() and not isinstance(node.value, mutable) and made not in MUTABLE_CALLS
                alias = name[0].isupper() and not name.isupper()  # CamelCase: a type alias
                if not (constant or name in STAGE_NAMES or alias):
                    found.append(f"{where}{name}")

    judge(ast.parse(path.read_text()).body, "")
    return found


def test_the_agents_keep_no_state_at_module_level_beyond_their_stage_object():
    found = {path.name: names for path in sorted((ROOT / "agents").glob("*.py")) if (names := module_state(path))}
    assert found == {}


def test_the_module_state_check_finds_globals_and_shared_class_attributes(tmp_path):
    path = tmp_path / "agent.py"
    path.write_text("import logging\nlog = logging.getLogger(__name__)\nLIMIT = 5\nSEEN = set()\n"
                    "cache = {}\nclass Stats:\n    batches = 0\n\n    def as_dict(self):\n        return {}\n"
                    "stage = object()\nif LIMIT:\n    pending = []\n")
    assert module_state(path) == ["SEEN", "cache", "Stats.batches", "pending"]


#: The window core and what it is made of: pure, run and tested without a broker (tests/test_window_core.py).
WINDOW_CORE = ("tables.window_core", "tables.entry", "tables.clock", "tables.watermarks", "tables.windows",
               "tables.dimensions", "tables.keys")


def test_the_window_core_loads_no_faust_kafka_or_mode():
    import subprocess
    import sys

    probe = ("import sys\n"
             f"for name in {WINDOW_CORE!r}: __import__(name)\n"
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'faust', 'aiokafka', 'mode', 'kafka'}))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
