"""vaelib's module-level import graph has no cycle, and every module imports.

In a cycle, what a module finds in another depends on which of the two was imported first (a
partly initialised module lacks the names defined below its imports). The graph is read from the
source: an edge A -> B for each import of a vaelib module B that runs when A is imported (at module
level or in a class body; not inside functions, which run later, nor under ``if TYPE_CHECKING``),
plus the packages that importing B initialises first, except A's own parent packages: those are
already being imported when A runs.
"""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import vaelib

PACKAGE_ROOT = Path(vaelib.__file__).parent


def module_files() -> dict[str, Path]:
    """Every module of vaelib by its dotted name (a package by the name of its folder)."""
    modules = {}
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def import_time_statements(body: list[ast.stmt]):
    """The import statements that run when a module with this body is imported."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            if not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
                yield from import_time_statements(node.body)
            yield from import_time_statements(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, *(h.body for h in node.handlers), node.orelse, node.finalbody):
                yield from import_time_statements(block)
        elif isinstance(node, (ast.With, ast.ClassDef)):
            yield from import_time_statements(node.body)


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The vaelib modules that importing ``name`` imports itself (see the module's docstring)."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    targets = set()
    for node in import_time_statements(ast.parse(path.read_text(encoding="utf-8")).body):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:  # a relative import: from .x import y, from .. import z
            anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join([*anchor, *([base] if base else [])])
        targets.add(base)  # initialised first, even when the names imported are its submodules
        targets.update({f"{base}.{alias.name}" for alias in node.names} & modules.keys())
    ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
    if is_package:
        ancestors.add(name)
    edges = set()
    for target in targets:
        parts = target.split(".")
        for i in range(1, len(parts) + 1):  # the target and the packages it initialises first
            prefix = ".".join(parts[:i])
            if prefix in modules and prefix not in ancestors and prefix != name:
                edges.add(prefix)
    return edges


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as [a, b, ..., a], or None (depth-first search, three colours)."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_every_vaelib_module_imports():
    for name in module_files():
        importlib.import_module(name)


def test_the_graph_reader_sees_known_edges():
    graph = import_graph()
    assert {"vaelib.models.base", "vaelib.models"} <= graph["vaelib.objectives"], graph["vaelib.objectives"]
    assert "vaelib.checkpoint" in graph["vaelib.models.base"]
    assert "vaelib._checks" in graph["vaelib.models.autoencoder"]
    assert "vaelib.models" not in graph["vaelib.models.autoencoder"]  # its own package: not an edge


def test_find_cycle_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_import_graph_of_vaelib_has_no_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)
