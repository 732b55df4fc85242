"""The package's import graph, read from the source with ``ast``, has no cycle.

What counts as an edge ``A -> B`` (``A`` and ``B`` modules of the package):

* every ``import`` and ``from ... import`` statement anywhere in ``A``: at
  module level, under ``if TYPE_CHECKING:`` (the type checker follows those,
  and a cycle there is a cycle of meaning), and inside functions and methods
  (an import deferred into a function still ties ``A`` to ``B``: deferring it
  only hides a cycle from the interpreter, not from the reader);
* ``from P import name`` is an edge to ``P.name`` when that is a module of the
  package, else to ``P``;
* importing ``P.Q.R`` also runs the ``__init__`` of every package on the way
  (``P.Q``), so those are edges too, except the packages that contain ``A``
  itself: they are already imported before ``A`` can run.  The root package
  contains every module, so it is never such an edge; an explicit
  ``from mmaplog import X`` in a submodule is one.

Imports made with ``importlib`` or ``__import__`` (the lazy names of the root
package, handler types named as ``"module:function"`` strings) are not
statements and are not edges: they are resolved at run time, after every
module has been imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "mmaplog"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules(root: Path) -> dict[str, Path]:
    return {_module_name(path, root): path for path in sorted(root.rglob("*.py"))}


def _is_package(name: str, modules: dict[str, Path]) -> bool:
    return modules[name].name == "__init__.py"


def _resolve(module: str, level: int, name: str | None, modules: dict[str, Path]) -> str:
    """The absolute name of ``from <level dots><name>`` written in ``module``."""
    if level == 0:
        return name or ""
    base = module.split(".")
    if not _is_package(module, modules):
        base.pop()
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def _targets(module: str, node: ast.Import | ast.ImportFrom, modules: dict[str, Path]) -> set[str]:
    """The package modules ``node`` names directly."""
    found: set[str] = set()
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name in modules:
                found.add(alias.name)
        return found
    source = _resolve(module, node.level, node.module, modules)
    if source.split(".")[0] != PACKAGE:
        return found
    for alias in node.names:
        submodule = f"{source}.{alias.name}"
        if submodule in modules:
            found.add(submodule)
        elif source in modules:
            found.add(source)
    return found


def _with_packages(module: str, target: str) -> set[str]:
    """``target`` and the packages on its way that do not contain ``module`` (their ``__init__`` runs too)."""
    parts = target.split(".")
    edges = {target}
    for end in range(1, len(parts)):
        package = ".".join(parts[:end])
        if not (module == package or module.startswith(package + ".")):
            edges.add(package)
    return edges


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the package modules it imports (every statement, see the module docstring)."""
    modules = _modules(root)
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _targets(module, node, modules):
                    edges |= _with_packages(module, target)
        edges.discard(module)
        graph[module] = {edge for edge in edges if edge in modules}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for succ in sorted(graph.get(node, ())):
            if state.get(succ) == 1:
                return [*path[path.index(succ):], succ]
            if succ not in state:
                cycle = visit(succ)
                if cycle is not None:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle is not None:
                return cycle
    return None


def test_the_package_import_graph_has_no_cycle() -> None:
    """A new cycle fails here, named module by module."""
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_graph_sees_every_kind_of_import(tmp_path: Path) -> None:
    """The reader of the graph finds cycles made of TYPE_CHECKING, function-level and package imports."""
    pkg = tmp_path / PACKAGE
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from . import b\n")
    (pkg / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .sub.b import B\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from .. import c\n")
    (pkg / "c.py").write_text("import mmaplog.a\n")
    graph = import_graph(pkg)
    assert graph[f"{PACKAGE}.a"] == {f"{PACKAGE}.sub", f"{PACKAGE}.sub.b"}
    assert graph[f"{PACKAGE}.sub.b"] == {f"{PACKAGE}.c"}  # its own package is not an edge
    assert find_cycle(graph) == [f"{PACKAGE}.{name}" for name in ("a", "sub", "sub.b", "c", "a")]


@pytest.mark.parametrize(
    ("importer", "statement", "expected"),
    [
        ("mmaplog.x", "from .layout import X", {"mmaplog.layout"}),
        ("mmaplog.x", "from . import layout", {"mmaplog.layout"}),
        ("mmaplog.x", "from .handlers import _base", {"mmaplog.handlers", "mmaplog.handlers._base"}),
        ("mmaplog.handlers.ring", "from .._record import LogRecord", {"mmaplog._record"}),
        ("mmaplog.handlers.ring", "from ._base import Handler", {"mmaplog.handlers._base"}),
        ("mmaplog.x", "from mmaplog import Logger", {"mmaplog"}),
    ],
)
def test_edges(importer: str, statement: str, expected: set[str]) -> None:
    """Relative and absolute forms resolve to the modules that run."""
    modules = _modules(ROOT)
    modules.setdefault(importer, ROOT / "x.py")
    node = ast.parse(statement).body[0]
    assert isinstance(node, (ast.Import, ast.ImportFrom))
    edges: set[str] = set()
    for target in _targets(importer, node, modules):
        edges |= _with_packages(importer, target)
    assert edges == expected
