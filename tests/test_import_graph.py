"""The packages' imports point one way: server → settlement → metering → clients, no circle.

Read from the source with ``ast`` (nothing is imported): every ``import`` of a module of these
packages, at module level or inside a function, is an arrow. Imports under ``if
TYPE_CHECKING:`` are not (they never run). A package may import its own modules and those of
the packages below it, never above; and no chain of arrows leads back to where it started.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest

ROOT: Final = Path(__file__).resolve().parents[1]
#: Lowest first: a package may import only from itself and the ones before it.
LAYERS: Final = ("clients", "metering", "settlement", "server")


def _modules() -> dict[str, Path]:
    out = {}
    for package in LAYERS:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def _imported(tree: ast.Module, modules: dict[str, Path]) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []  # typing only: never runs (ast.walk reads the children after this)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module
            # ``from server import api`` imports the module server.api.
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        graph[name] = {m for m in _imported(tree, modules) if m in modules and m != name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of the graph, or None (depth-first search, colouring the path)."""
    on_path: list[str] = []
    done: set[str] = set()

    def visit(node: str) -> list[str] | None:
        if node in on_path:
            return [*on_path[on_path.index(node) :], node]
        if node in done:
            return None
        on_path.append(node)
        for target in sorted(graph[node]):
            found = visit(target)
            if found:
                return found
        on_path.pop()
        done.add(node)
        return None

    for start in sorted(graph):
        found = visit(start)
        if found:
            return found
    return None


def test_no_module_imports_a_package_above_its_own() -> None:
    rank = {package: i for i, package in enumerate(LAYERS)}
    wrong = [
        f"{source} → {target}"
        for source, targets in _graph().items()
        for target in targets
        if rank[target.split(".")[0]] > rank[source.split(".")[0]]
    ]
    assert wrong == [], f"imports against the layers {' → '.join(reversed(LAYERS))}: {wrong}"


def test_no_circle_of_imports() -> None:
    cycle = _cycle(_graph())
    assert cycle is None, "an import circle: " + " → ".join(cycle or [])


@pytest.mark.parametrize(
    ("graph", "circle"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
        ({"a": {"b", "c"}, "b": {"c"}, "c": {"b"}}, ["b", "c", "b"]),
    ],
)
def test_the_circle_finder_finds_circles(
    graph: dict[str, set[str]], circle: list[str] | None
) -> None:
    assert _cycle(graph) == circle


def test_the_graph_sees_function_level_imports() -> None:
    # The circle this test was written for ran through an import inside a function
    # (server.api → server.openapi); the graph must see such arrows.
    tree = ast.parse("def f():\n    from server import openapi\n")
    assert "server.openapi" in set(_imported(tree, {}))
