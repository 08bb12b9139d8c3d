"""No import cycle among the host's packages (issue 28).

The graph is read from the source with :mod:`ast`, not by importing: every ``import`` counts,
at module level or inside a function (a function-level import hides a cycle, it does not
remove it); only imports under ``if TYPE_CHECKING:`` are left out, as they never run (the
import-linter contracts leave them out too). ``from x import y`` where ``x.y`` is a module is an edge to ``x.y``. Package
``__init__`` files count as Python runs them: importing ``a.b.c`` runs ``a/__init__`` and
``a/b/__init__`` first, so it is an edge to ``a``, ``a.b`` and ``a.b.c`` — except to the
importer's own packages, which are already running when the importer runs.
"""
from __future__ import annotations

import ast
import configparser
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("hostspec", "connector_coursera", "connector_linkedin", "publisher_360learning", "learning_demo")

Graph = dict[str, dict[str, int]]        # module -> {imported module: line of the first import}


def modules(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Dotted name -> file of every module of ``packages`` under ``root``."""
    out = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imported(node: ast.Import | ast.ImportFrom, name: str, is_package: bool, known: dict[str, Path]) -> list[str]:
    """The modules an import statement names (``from x import y``: ``x.y`` when it is a module)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:                       # relative: from its package, one level up per extra dot
        package = name.split(".") if is_package else name.split(".")[:-1]
        package = package[:len(package) - node.level + 1]
        base = ".".join(package + ([node.module] if node.module else []))
    return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]


def _is_type_checking(node: ast.AST) -> bool:
    """``if TYPE_CHECKING:``: imports for annotations only, which never run."""
    return isinstance(node, ast.If) and (
        (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
        or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING"))


def import_graph(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> Graph:
    known = modules(root, packages)
    graph: Graph = {name: {} for name in known}
    for name, path in known.items():
        own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 2)}   # itself and its packages
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        type_only = {id(n) for block in ast.walk(tree) if _is_type_checking(block) for n in ast.walk(block)}
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)) or id(node) in type_only:
                continue
            for target in _imported(node, name, path.name == "__init__.py", known):
                parts = target.split(".")
                for i in range(1, len(parts) + 1):       # a/__init__, a/b/__init__, then a.b.c itself
                    step = ".".join(parts[:i])
                    if step in known and step not in own:
                        graph[name].setdefault(step, node.lineno)
    return graph


def strongly_connected(graph: Graph) -> list[list[str]]:
    """Tarjan's strongly connected components of more than one module (each holds a cycle)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def a_cycle(graph: Graph, component: list[str]) -> str:
    """One cycle through ``component``'s first module, each step with the importing line."""
    start, members = component[0], set(component)
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:                          # shortest way back to start inside the component
        v = queue.popleft()
        for w in sorted(graph[v]):
            if w not in members:
                continue
            if w == start:
                path = [v]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                path.reverse()
                return " -> ".join(f"{a} (line {graph[a][b]})" for a, b in zip(path, path[1:] + [start])) \
                    + f" -> {start}"
            if w not in came_from:
                came_from[w] = v
                queue.append(w)
    raise AssertionError(f"no cycle through {start}")   # pragma: no cover - a component always has one


def cycles(graph: Graph) -> list[str]:
    return [a_cycle(graph, component) for component in strongly_connected(graph)]


def test_the_host_s_packages_import_one_another_without_a_cycle():
    found = cycles(import_graph())
    assert not found, "import cycles (the line of each import):\n  " + "\n  ".join(found)


def _package(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_a_cycle_through_a_function_level_import_is_found(tmp_path):
    _package(tmp_path, {"p/__init__.py": "", "p/a.py": "from p import b\n",
                        "p/b.py": "def f():\n    from .a import x\n", "p/c.py": "import p.a\n"})
    found = cycles(import_graph(tmp_path, ("p",)))
    assert found == ["p.a (line 1) -> p.b (line 2) -> p.a"]


def test_a_cycle_through_a_package_init_is_found(tmp_path):
    """Importing ``s.tool`` first: ``q.helpers`` runs ``q/__init__``, which imports ``q.api``,
    which imports ``s.tool``, not yet defined. A module's own package is no edge."""
    _package(tmp_path, {"q/__init__.py": "from q.api import run\n", "q/api.py": "from s.tool import x\n",
                        "q/helpers.py": "from q import api\n", "s/__init__.py": "",
                        "s/tool.py": "from q.helpers import y\n"})
    graph = import_graph(tmp_path, ("q", "s"))
    assert "q" not in graph["q.helpers"] and "q" in graph["s.tool"]
    assert cycles(graph) == ["q (line 1) -> q.api (line 1) -> s.tool (line 1) -> q"]


def test_every_contract_module_is_held_by_the_import_contracts():
    """The import-linter contract that keeps the contract (hostspec's top-level modules) below every
    room lists its modules by name: a new top-level module must join the list, or it would escape."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    listed = set(config["importlinter:contract:contract"]["source_modules"].split())
    top = {f"hostspec.{p.stem}" for p in (ROOT / "hostspec").glob("*.py") if p.stem not in ("__init__", "__main__")}
    assert top == listed, f"not in setup.cfg's contract list: {sorted(top - listed)}; gone: {sorted(listed - top)}"
