"""The package's modules depend on each other in one direction only: no import cycle, even a deferred one."""

from __future__ import annotations

import ast
from pathlib import Path

import crypto_server

PACKAGE = Path(crypto_server.__file__).parent


def _internal_imports(path: Path) -> set[str]:
    """The sibling modules ``path`` imports, at any level of the file (functions included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                names.add(node.module.split(".")[0])
            else:  # from . import a, b
                names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name.split(".")[1] for a in node.names if a.name.startswith("crypto_server."))
    return names


def _graph() -> dict[str, set[str]]:
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "__main__"}
    return {m: _internal_imports(PACKAGE / f"{m}.py") & modules for m in modules}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of module names, or None."""
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return path[path.index(module):] + [module]
        if module in done:
            return None
        for imported in sorted(graph[module]):
            found = visit(imported, path + [module])
            if found:
                return found
        done.add(module)
        return None

    for module in sorted(graph):
        found = visit(module, [])
        if found:
            return found
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_module_of_the_package_imports_itself_back():
    graph = _graph()
    assert {"data", "synthetic", "csvload", "load"} <= set(graph)  # the walk sees the modules
    assert "data" in graph["synthetic"]  # ...and their imports
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_data_model_imports_nothing_of_the_package():
    assert _graph()["data"] == set()
