"""The import graph of ``src/latentkit`` has no circle.

The graph is read from the source with ``ast``, not from a running interpreter, so an
import Python never executes on a given path still counts. Every ``import`` and
``from ... import`` statement counts wherever it is written: at module level, inside a
function (a deferred import) and under ``if TYPE_CHECKING:``. Relative imports are
resolved against the importing module.

What an import statement in module M is an edge to:

* ``import latentkit.a.b`` and ``from latentkit.a.b import name``: the module
  ``latentkit.a.b``, or, when ``name`` is itself a submodule (``from latentkit import
  distributions``), that submodule ``latentkit.a.b.name``.
* Also the enclosing packages of the imported module that do not enclose M: importing
  ``latentkit.objectives.base`` from ``latentkit.registry`` runs
  ``latentkit/objectives/__init__.py`` first, and whatever that imports. An enclosing
  package that also encloses M is not counted: its ``__init__`` has begun before M's body
  runs (a child never executes before its parent package), so the import finds it in
  ``sys.modules`` and runs nothing new. In particular the root package ``latentkit``
  (the public facade, which imports every public module) encloses every module and is
  never counted implicitly; ``import latentkit`` or ``from latentkit import name`` with
  ``name`` not a submodule counts as an edge to it like any other.

Imports of anything outside ``latentkit`` (torch, the standard library, plugins) are not
edges. A circle found is printed module by module.
"""

from __future__ import annotations

import ast
import pathlib

SRC = pathlib.Path(__file__).resolve().parents[1] / "src"
ROOT = "latentkit"


def module_files(src: pathlib.Path = SRC, root: str = ROOT) -> dict[str, pathlib.Path]:
    """Every module of the package ``root`` under ``src``: dotted name → file (a package is
    named by its ``__init__.py``)."""
    out = {}
    for path in sorted((src / root).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_package(name: str, files: dict[str, pathlib.Path]) -> bool:
    return name in files and files[name].name == "__init__.py"


def _resolve(node: ast.ImportFrom, module: str, files: dict[str, pathlib.Path]) -> str:
    """The absolute module a ``from X import ...`` names (``X`` may be relative)."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not _is_package(module, files):
        base = base[:-1]  # a plain module's level 1 is its own package
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _with_packages(target: str, importer: str, files: dict[str, pathlib.Path]) -> set[str]:
    """``target`` and its enclosing packages (known modules) that do not enclose
    ``importer``: the ``__init__`` files the import may run."""
    out = {target} if target in files else set()
    parts = target.split(".")
    for i in range(1, len(parts)):
        package = ".".join(parts[:i])
        encloses_importer = importer == package or importer.startswith(package + ".")
        if package in files and not encloses_importer:
            out.add(package)
    return out


def imports_of(module: str, files: dict[str, pathlib.Path], root: str = ROOT) -> set[str]:
    """The modules of ``root`` that ``module``'s source imports (the rule in this file's
    docstring)."""
    tree = ast.parse(files[module].read_text(), filename=str(files[module]))
    out: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node, module, files)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.append(sub if sub in files else base)
        for target in targets:
            if target == root or target.startswith(root + "."):
                out |= _with_packages(target, module, files)
    out.discard(module)
    return out


def import_graph(src: pathlib.Path = SRC, root: str = ROOT) -> dict[str, set[str]]:
    files = module_files(src, root)
    return {m: imports_of(m, files, root) for m in files}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle through each strongly connected component of more than one module
    (Tarjan's algorithm, iterative), each as a list of modules starting and ending at the
    same one."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(component)
    return [_circle_in(graph, c) for c in components]


def _circle_in(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest circle through the component's first module (breadth-first)."""
    start = min(component)
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node] & component):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if child not in parent:
                    parent[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"no circle through {start} in its component")  # unreachable


def test_no_import_circle_in_latentkit():
    found = cycles(import_graph())
    assert not found, "import circles:\n" + "\n".join(" -> ".join(c) for c in found)


def _graph_of(sources: dict[str, str], tmp_path: pathlib.Path) -> dict[str, set[str]]:
    for name, text in sources.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return import_graph(tmp_path, "pkg")


def test_the_graph_counts_deferred_type_checking_relative_and_package_imports(tmp_path):
    """The rule on a small package: each kind of import gives the edge the docstring says,
    and a circle closed by any one of them is found."""
    graph = _graph_of(
        {
            "pkg/__init__.py": "from pkg import a\n",
            "pkg/a.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import B\n"
            ),
            "pkg/b.py": "def f():\n    from . import c\n",
            "pkg/c.py": "import torch\nfrom pkg.sub.d import x\n",
            "pkg/sub/__init__.py": "from .d import x\nfrom pkg import e\n",
            "pkg/sub/d.py": "from ..e import y\nfrom pkg.sub.f import z\n",
            "pkg/sub/f.py": "",
            "pkg/g.py": "from pkg.sub import x\n",
            "pkg/e.py": "import pkg\n",
        },
        tmp_path,
    )
    assert graph == {
        "pkg": {"pkg.a"},
        "pkg.a": {"pkg.b"},  # under TYPE_CHECKING
        "pkg.b": {"pkg.c"},  # deferred, relative, a submodule by name
        "pkg.c": {"pkg.sub", "pkg.sub.d"},  # the package its import runs, not the root
        "pkg.sub": {"pkg.sub.d", "pkg.e"},
        "pkg.sub.d": {"pkg.e", "pkg.sub.f"},  # its own package is not counted
        "pkg.sub.f": set(),
        "pkg.e": {"pkg"},  # the root named explicitly
        "pkg.g": {"pkg.sub"},  # a name of the package's __init__
    }
    assert cycles(graph) == [["pkg", "pkg.a", "pkg.b", "pkg.c", "pkg.sub", "pkg.e", "pkg"]]
    graph["pkg.e"].clear()
    assert cycles(graph) == []
    assert cycles({"x": {"y"}, "y": {"x", "z"}, "z": set()}) == [["x", "y", "x"]]
