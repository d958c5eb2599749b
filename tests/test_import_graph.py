"""Our modules import one another in the direction DESIGN.md draws, and never in a circle.

Read from the source with `ast`, so every import counts: those inside functions (a lazy import
hides a cycle, it does not remove it) and those under `if TYPE_CHECKING:` (mypy follows them).

    web ──► broker ──► calendars        calendars imports nothing of ours
    signaling ──► broker                web and signaling never import each other
    broker.app and broker.cli are the composition roots: they alone may import web and signaling
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping, Set
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("broker", "signaling", "web", "calendars")
COMPOSITION_ROOTS = {"broker.app", "broker.cli"}
# What each package may import of ours (besides itself).
MAY_IMPORT: dict[str, set[str]] = {
    "calendars": set(),
    "broker": {"calendars"},
    "web": {"broker", "calendars"},
    "signaling": {"broker", "calendars"},
}

Graph = Mapping[str, Set[str]]


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_names(source: str, module: str, *, is_package: bool = False) -> set[str]:
    """Every module name an import statement anywhere in `source` names (relative ones resolved).

    `from a import b` names `a.b` as well as `a`: which of them is a module is for the caller."""
    package = module if is_package else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                origin = ".".join([*base, node.module] if node.module else base)
            else:
                origin = node.module or ""
            names.add(origin)
            names.update(f"{origin}.{alias.name}" for alias in node.names if alias.name != "*")
    return names


def import_graph(root: Path = ROOT, packages: Iterable[str] = PACKAGES) -> dict[str, set[str]]:
    """Module -> the modules of ours it imports (each import as its most specific module)."""
    paths = {module_name(p, root): p for package in packages for p in sorted((root / package).rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for module, path in paths.items():
        names = imported_names(path.read_text(), module, is_package=path.name == "__init__.py")
        # `from broker import settings` names `broker` and `broker.settings`: keep the module, not
        # the package it sits in (whose __init__ is then run too, but holds only a docstring).
        ours = {n for n in names if n in paths}
        graph[module] = {n for n in ours if not any(o.startswith(n + ".") for o in ours)} - {module}
    return graph


def find_cycles(graph: Graph) -> list[list[str]]:
    """One cycle (as a path that ends where it starts) per strongly connected set of modules.

    Tarjan's algorithm finds the sets; a breadth-first search inside each names a shortest cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return sorted(_shortest_cycle(graph, component) for component in components)


def _shortest_cycle(graph: Graph, component: list[str]) -> list[str]:
    members = set(component)
    start = component[0]
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph.get(node, ())):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [*reversed(path), start]
                if nxt in members and nxt not in came_from:
                    came_from[nxt] = node
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"no cycle through {start} in {component}")  # a component always has one


def direction_violations(graph: Graph) -> list[str]:
    """Each import that goes against DESIGN.md's dependency direction, as "importer -> imported"."""
    found = []
    for module, imported in sorted(graph.items()):
        if module in COMPOSITION_ROOTS:
            continue
        package = module.split(".")[0]
        for target in sorted(imported):
            other = target.split(".")[0]
            if other != package and other not in MAY_IMPORT[package]:
                found.append(f"{module} -> {target}")
    return found


# Inside broker: the HTTP edge (endpoint declarations, problem+json, routes) may use the domain
# modules, never the other way round, so the core stays callable from the command line and tests.
BROKER_EDGE = ("broker.http", "broker.routes")


def edge_imports_from_the_core(graph: Graph) -> list[str]:
    """Each import of broker's HTTP edge by one of broker's domain modules."""
    found = []
    for module, imported in sorted(graph.items()):
        if not module.startswith("broker.") or module.startswith(BROKER_EDGE) or module in COMPOSITION_ROOTS:
            continue
        found.extend(f"{module} -> {t}" for t in sorted(imported) if t.startswith(BROKER_EDGE))
    return found


# --- the project --------------------------------------------------------------------------------


def test_no_module_of_ours_imports_itself_in_a_circle() -> None:
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_imports_follow_the_dependency_direction() -> None:
    violations = direction_violations(import_graph())
    assert not violations, "imports against DESIGN.md's direction:\n" + "\n".join(violations)


def test_broker_domain_modules_never_import_the_http_edge() -> None:
    violations = edge_imports_from_the_core(import_graph())
    assert not violations, "domain modules importing the HTTP edge:\n" + "\n".join(violations)


def test_edge_checker_refuses_a_domain_module_importing_a_route() -> None:
    graph = {"broker.bookings": {"broker.routes.bookings"}, "broker.routes.bookings": {"broker.bookings"}}
    assert edge_imports_from_the_core(graph) == ["broker.bookings -> broker.routes.bookings"]


def test_the_graph_sees_the_command_line_composition() -> None:
    """A check on the reader itself: edges we know exist are found."""
    graph = import_graph()
    assert {"broker.commands", "signaling.commands", "web.commands"} <= graph["broker.cli"]
    assert "broker.cli" not in set().union(*(graph[m] for m in graph if m != "broker.cli"))
    assert "broker.settings" in graph["broker.commands"]


# --- the checker, on made-up graphs and sources -------------------------------------------------


def test_cycle_finder_reports_each_cycle_once_as_a_path() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"a"}, "f": {"g"}, "g": {"f"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"], ["f", "g", "f"]]


def test_cycle_finder_picks_the_shortest_cycle_and_sees_a_module_importing_itself() -> None:
    graph = {"a": {"b", "c"}, "b": {"c"}, "c": {"a"}, "s": {"s"}}
    assert find_cycles(graph) == [["a", "c", "a"], ["s", "s"]]


def test_cycle_finder_passes_an_acyclic_graph() -> None:
    assert find_cycles({"a": {"b", "c"}, "b": {"c"}, "c": set(), "d": {"a", "c"}}) == []


def test_direction_checker_allows_the_roots_and_refuses_the_rest() -> None:
    graph = {
        "broker.app": {"web.mount", "signaling.mount"},
        "broker.cli": {"web.commands"},
        "broker.bookings": {"calendars.slots", "web.render"},
        "web.pages": {"broker.bookings", "calendars.ical", "signaling.hub"},
        "signaling.hub": {"broker.tokens", "web.pages"},
        "calendars.slots": {"calendars.busy", "broker.zones"},
    }
    assert direction_violations(graph) == [
        "broker.bookings -> web.render",
        "calendars.slots -> broker.zones",
        "signaling.hub -> web.pages",
        "web.pages -> signaling.hub",
    ]


SOURCE = """
from __future__ import annotations
import json
from typing import TYPE_CHECKING
from broker import settings, database as db
import broker.tokens
from . import hub
from .relay import Relay
from .. import web

if TYPE_CHECKING:
    from web.render import Page

def lazily():
    from broker.cli import main
"""


def test_every_import_is_read_lazy_and_type_checking_ones_included() -> None:
    names = imported_names(SOURCE, "signaling.server")
    assert {
        "broker.settings",
        "broker.database",
        "broker.tokens",
        "signaling.hub",
        "signaling.relay",
        "web.render",
        "broker.cli",
    } <= names
    assert "json" in names and "__future__" in names  # not ours: the graph leaves them out


@pytest.mark.parametrize(
    ("source", "edges"),
    [
        ("from broker import settings\n", {"broker.settings"}),
        ("from broker.settings import Settings\n", {"broker.settings"}),
        ("import broker.settings\n", {"broker.settings"}),
        ("from . import settings\n", {"broker.settings"}),
        ("def f():\n    from broker.cli import main\n", {"broker.cli"}),
    ],
)
def test_an_import_becomes_an_edge_to_its_module(tmp_path: Path, source: str, edges: set[str]) -> None:
    (tmp_path / "broker").mkdir()
    for name in ("__init__", "settings", "cli"):
        (tmp_path / "broker" / f"{name}.py").write_text('"""x"""\n')
    (tmp_path / "broker" / "user.py").write_text(source)
    assert import_graph(tmp_path, ["broker"])["broker.user"] == edges
