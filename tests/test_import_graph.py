"""vaelib's import graph has no cycle, no module imports a private name of another, and every
module imports.

In a cycle, what a module finds in another depends on which of the two was imported first (a
partly initialised module lacks the names defined below its imports); a cycle through an import
inside a function hides that until the function runs, and says that two layers lean on each other.
The graph is read from the source: an edge A -> B for each import of a vaelib module B anywhere in
A (at module level, in a class body or inside a function; not under ``if TYPE_CHECKING``), plus the
packages that importing B initialises first, except A's own parent packages: those are already
being imported when A runs. ``import_graph(module_level_only=True)`` keeps only the imports that
run when A is imported.

Private names: a name with a leading underscore is private to where it is defined. A private
module (``vaelib/engine/_kernel.py``) may be imported by the modules of its own package and its
subpackages (``vaelib._io`` by all of vaelib); a private name inside a module (``_device`` in
``vaelib.train``) by no other module.
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


def import_statements(body: list[ast.stmt]):
    """Every import statement of a module with this body, but those under ``if TYPE_CHECKING``."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            yield from import_statements(node.orelse)
        else:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    yield from import_statements([child])
                else:  # statements nested in expressions do not exist, but handlers and match cases do
                    yield from import_statements([n for n in ast.iter_child_nodes(child) if isinstance(n, ast.stmt)])


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


def absolute_base(node: ast.ImportFrom, name: str, is_package: bool) -> str:
    """The module a ``from ... import`` statement of the module ``name`` imports from."""
    package = name if is_package else name.rpartition(".")[0]
    base = node.module or ""
    if node.level:  # a relative import: from .x import y, from .. import z
        anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
        base = ".".join([*anchor, *([base] if base else [])])
    return base


def imported_modules(name: str, path: Path, modules: dict[str, Path], module_level_only: bool = False) -> set[str]:
    """The vaelib modules that ``name`` imports itself (see the module's docstring)."""
    is_package = path.name == "__init__.py"
    body = ast.parse(path.read_text(encoding="utf-8")).body
    targets = set()
    for node in (import_time_statements if module_level_only else import_statements)(body):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
            continue
        base = absolute_base(node, name, is_package)
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


def import_graph(module_level_only: bool = False) -> dict[str, set[str]]:
    modules = module_files()
    return {name: imported_modules(name, path, modules, module_level_only) for name, path in modules.items()}


def private_imports(name: str, path: Path, modules: dict[str, Path]) -> list[str]:
    """The imports in module ``name`` of a private name it may not use (see the module's docstring),
    each as "module.name"."""
    is_package = path.name == "__init__.py"
    own_package = name if is_package else name.rpartition(".")[0]
    bad = []
    for node in import_statements(ast.parse(path.read_text(encoding="utf-8")).body):
        if isinstance(node, ast.Import):
            dotted = [alias.name for alias in node.names]
        else:
            base = absolute_base(node, name, is_package)
            dotted = [f"{base}.{alias.name}" for alias in node.names]
        for target in dotted:
            if not target.startswith("vaelib."):
                continue
            parts = target.split(".")
            for i, part in enumerate(parts[1:], start=1):
                if not part.startswith("_") or part.startswith("__"):
                    continue
                holder = ".".join(parts[:i])  # the package or module that defines the private name
                private = ".".join(parts[:i + 1])
                if private in modules:  # a private module: visible in its package and the subpackages
                    allowed = own_package == holder or own_package.startswith(holder + ".")
                else:  # a private name inside a module: visible in that module only
                    allowed = name == holder
                if not allowed:
                    bad.append(private)
                break
    return bad


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
    cycle = find_cycle(import_graph(module_level_only=True))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_cycle_through_imports_inside_functions_either():
    graph = import_graph()
    assert "vaelib.engine" not in graph["vaelib.runs"] and "vaelib.engine" not in graph["vaelib.train"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle (function-level imports included): " + " -> ".join(cycle)


def test_the_reader_sees_imports_inside_functions_and_skips_type_checking(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import vaelib.data\n"
                    "def f():\n    try:\n        from vaelib import losses\n    except ImportError:\n        pass\n")
    modules = module_files()
    assert imported_modules("vaelib.m", path, modules) == {"vaelib.losses"}
    assert imported_modules("vaelib.m", path, modules, module_level_only=True) == set()


def test_no_module_imports_a_private_name_of_another():
    modules = module_files()
    bad = {name: found for name, path in modules.items() if (found := private_imports(name, path, modules))}
    assert not bad, f"private names imported from elsewhere: {bad}"


def test_the_private_name_rule_reads_modules_and_names(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("from vaelib import _io\nfrom vaelib.engine import _kernel\nfrom vaelib.train import _fit\n"
                    "def f():\n    from vaelib.engine._kernel import load\n")
    modules = module_files()
    assert private_imports("vaelib.m", path, modules) == ["vaelib.engine._kernel", "vaelib.train._fit",
                                                           "vaelib.engine._kernel"]
    assert private_imports("vaelib.engine.m", path, modules) == ["vaelib.train._fit"]


def test_the_package_docstring_names_every_module():
    top_level = {name.split(".")[1] for name in module_files() if name.count(".") >= 1}
    missing = sorted(m for m in top_level if not m.startswith("__") and f"``{m}``" not in vaelib.__doc__)
    assert not missing, f"vaelib's docstring does not list the modules {missing}"
