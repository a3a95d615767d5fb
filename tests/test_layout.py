"""The package layout: the modules of src/promotel import each other without a cycle.

A cycle makes the import order matter (a module sees the other half-initialised), forces imports into
function bodies to dodge it, and means neither module can be read or changed alone. The graph is built
from the source with ``ast``: every ``import`` and ``from … import`` of a ``promotel`` module, also those
inside functions (they run, only later), but not those under ``if TYPE_CHECKING:`` (they never run). An
edge goes to the module named, or, for ``from package import name`` where ``name`` is not a submodule,
to the package. Importing ``a.b.c`` also runs ``a/__init__`` and ``a/b/__init__``; those implicit parent
imports are not edges (every module would then depend on ``promotel/__init__``), as in the usual
import-graph tools. Imports by name string (``importlib.import_module``, the 0.1 aliases of
``promotel._moved``) are not seen.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

from support.paths import REPO

SRC = REPO / "src"
PACKAGE = "promotel"

Graph = dict[str, set[str]]


def module_files(src: Path = SRC, package: str = PACKAGE) -> dict[str, Path]:
    """Dotted module name → file, for every module of the package (``__init__.py`` is the package)."""
    out: dict[str, Path] = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(node: ast.AST) -> Iterable[ast.Import | ast.ImportFrom]:
    """Every import statement under ``node`` (function bodies included), minus ``if TYPE_CHECKING:`` bodies."""
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
        return
    if isinstance(node, ast.If) and _is_type_checking(node.test):
        children: list[ast.AST] = list(node.orelse)          # the else branch does run
    else:
        children = list(ast.iter_child_nodes(node))
    for child in children:
        yield from _import_nodes(child)


def _known(name: str, modules: Mapping[str, Path]) -> str | None:
    """The module ``name`` runs: itself if it is a module, else its longest known prefix."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str, path: Path, modules: Mapping[str, Path]) -> set[str]:
    """The package's modules that ``module`` (source at ``path``) imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            if node.level:                                    # relative: from . / .. import
                base_parts = package.split(".")
                base = ".".join(base_parts[: len(base_parts) - (node.level - 1)])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            # ``from pkg import name``: the submodule pkg.name when there is one, else pkg itself.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                       for alias in node.names]
        for target in targets:
            known = _known(target, modules)
            if known is not None and known != module:
                out.add(known)
    return out


def import_graph(src: Path = SRC, package: str = PACKAGE) -> Graph:
    modules = module_files(src, package)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted; sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
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
    return sorted(found)


def _describe(component: list[str], graph: Mapping[str, set[str]]) -> str:
    members = set(component)
    edges = [f"    {a} imports {b}" for a in component for b in sorted(graph[a] & members)]
    return "\n".join([f"  cycle between {', '.join(component)}:", *edges])


def test_src_promotel_has_no_import_cycle() -> None:
    graph = import_graph()
    assert "promotel.export.encode" in graph and len(graph) > 40          # the walk found the package
    found = cycles(graph)
    assert not found, ("Import cycles in src/promotel (move the shared part into a module both can import, "
                       "or import one way only):\n" + "\n".join(_describe(c, graph) for c in found))


def test_export_senders_import_one_way() -> None:
    """The factory lives with the Sender protocol; the senders import only what they share (``outcome``)."""
    graph = import_graph()
    assert {"promotel.export.grpc_sender", "promotel.export.http_sender"} <= graph["promotel.export.sender"]
    for impl in ("promotel.export.grpc_sender", "promotel.export.http_sender"):
        assert "promotel.export.outcome" in graph[impl] and "promotel.export.sender" not in graph[impl]


def test_the_graph_sees_function_imports_and_skips_type_checking_ones(tmp_path: Path) -> None:
    """The checker itself can fail: a cycle closed by an import inside a function is found, one closed only
    under ``if TYPE_CHECKING:`` is not; relative and ``from package import module`` imports resolve."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from pkg.sub import c\n")
    (pkg / "a.py").write_text("from pkg import b\n")
    (pkg / "b.py").write_text("def f():\n    from . import a\n    return a\n")
    (pkg / "sub" / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..a import x\nelse:\n    import pkg.b\n")
    (pkg / "sub" / "d.py").write_text("from .. import sub\nfrom ..sub.c import y\n")
    graph = import_graph(tmp_path, "pkg")
    assert graph == {"pkg": set(), "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.a"}, "pkg.sub": {"pkg.sub.c"},
                     "pkg.sub.c": {"pkg.b"}, "pkg.sub.d": {"pkg.sub", "pkg.sub.c"}}
    assert cycles(graph) == [["pkg.a", "pkg.b"]]
    assert cycles({"x": {"y"}, "y": {"z"}, "z": {"x"}, "w": {"x"}}) == [["x", "y", "z"]]


@pytest.mark.parametrize("old", ["promotel.export.sender", "promotel.export"])
def test_make_sender_keeps_its_import_paths(old: str) -> None:
    import importlib

    from promotel.export.sender import make_sender

    assert importlib.import_module(old).make_sender is make_sender
